//! Sessions: a shell's state (cwd, variables, `$?`) kept host-side between commands, so every
//! route sees the same session. Persisted in the sandbox's `sessions.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use hybox_wasi_runtime::CancelToken;
use hybox_wasi_runtime::shell::ShellState;

use crate::api::error::ApiError;

/// The id of the session every sandbox has without asking.
pub const DEFAULT_SESSION: &str = "default";

/// A session of a sandbox.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// When it was created.
    pub created_at: String,
    /// The shell state.
    pub state: Mutex<ShellState>,
    /// Serialises commands of one session, as one shell runs one command at a time.
    pub turn: tokio::sync::Mutex<()>,
    /// Commands running in it, by exec id.
    pub running: Mutex<HashMap<String, CancelToken>>,
    destroyed: AtomicBool,
}

/// What is persisted and shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Id.
    pub id: String,
    /// Working directory.
    pub cwd: String,
    /// Exported environment.
    pub env: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: String,
    /// `$?` of the last command.
    #[serde(default)]
    pub last_exit_code: i32,
}

impl Session {
    /// A new session.
    #[must_use]
    pub fn new(id: &str, cwd: &str, env: BTreeMap<String, String>) -> Self {
        Self::from_info(SessionInfo {
            id: id.to_owned(),
            cwd: cwd.to_owned(),
            env,
            created_at: crate::timestamp::now(),
            last_exit_code: 0,
        })
    }

    fn from_info(info: SessionInfo) -> Self {
        let mut state = ShellState::new(&info.cwd, info.env);
        state.last_status = info.last_exit_code;
        Self {
            id: info.id,
            created_at: info.created_at,
            state: Mutex::new(state),
            turn: tokio::sync::Mutex::new(()),
            running: Mutex::new(HashMap::new()),
            destroyed: AtomicBool::new(false),
        }
    }

    /// Its API view.
    #[must_use]
    pub fn info(&self) -> SessionInfo {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        SessionInfo {
            id: self.id.clone(),
            cwd: st.cwd.clone(),
            env: st.environment().into_iter().collect(),
            created_at: self.created_at.clone(),
            last_exit_code: st.last_status,
        }
    }

    /// Marks it destroyed and cancels what runs in it.
    pub fn destroy(&self) {
        self.destroyed.store(true, Ordering::SeqCst);
        for token in self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            token.cancel();
        }
    }

    /// Whether [`Self::destroy`] was called.
    #[must_use]
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }
}

/// The sessions of one sandbox.
#[derive(Debug)]
pub struct Sessions {
    file: PathBuf,
    map: Mutex<HashMap<String, Arc<Session>>>,
}

/// Session ids follow the sandbox id rules (they appear in URLs).
fn check_id(id: &str) -> Result<(), ApiError> {
    crate::sandbox::SandboxId::parse(id).map(drop).map_err(|_| {
        ApiError::InvalidRequest(format!(
            "invalid session id {id:?}: lowercase letters, digits and '-', 1-63 characters"
        ))
    })
}

impl Sessions {
    /// Loads the sessions persisted in `dir` (none when the file is missing or unreadable).
    #[must_use]
    pub fn load(dir: &Path) -> Self {
        let file = dir.join("sessions.json");
        let infos: Vec<SessionInfo> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let map = infos
            .into_iter()
            .map(|i| (i.id.clone(), Arc::new(Session::from_info(i))))
            .collect();
        Self {
            file,
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes every session's state (temp file + rename).
    pub fn persist(&self) {
        let mut infos: Vec<SessionInfo> = self.lock().values().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        let tmp = self.file.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&infos)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot persist sessions");
        }
    }

    /// The session `id`; the default session is created on first use with the sandbox's env.
    ///
    /// # Errors
    /// [`ApiError::SessionNotFound`] for an unknown id.
    pub fn get(
        &self,
        id: &str,
        sandbox_env: &BTreeMap<String, String>,
    ) -> Result<Arc<Session>, ApiError> {
        let mut map = self.lock();
        if let Some(s) = map.get(id) {
            return Ok(s.clone());
        }
        if id == DEFAULT_SESSION {
            let s = Arc::new(Session::new(id, "/workspace", sandbox_env.clone()));
            map.insert(id.to_owned(), s.clone());
            return Ok(s);
        }
        Err(ApiError::SessionNotFound(id.to_owned()))
    }

    /// Creates a session.
    ///
    /// # Errors
    /// [`ApiError::SessionExists`], or [`ApiError::InvalidRequest`] for a bad id.
    pub fn create(&self, session: Session) -> Result<Arc<Session>, ApiError> {
        check_id(&session.id)?;
        let mut map = self.lock();
        if map.contains_key(&session.id) {
            return Err(ApiError::SessionExists(session.id));
        }
        let s = Arc::new(session);
        map.insert(s.id.clone(), s.clone());
        drop(map);
        self.persist();
        Ok(s)
    }

    /// All sessions, sorted by id.
    #[must_use]
    pub fn list(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes a session, ending what runs in it with `SESSION_DESTROYED`.
    ///
    /// # Errors
    /// [`ApiError::SessionNotFound`].
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        let s = self
            .lock()
            .remove(id)
            .ok_or_else(|| ApiError::SessionNotFound(id.to_owned()))?;
        s.destroy();
        self.persist();
        Ok(())
    }

    /// Ends every session (the sandbox is being destroyed).
    pub fn destroy_all(&self) {
        for s in self.lock().drain().map(|(_, s)| s) {
            s.destroy();
        }
    }
}
