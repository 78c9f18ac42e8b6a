//! Code contexts as the API sees them: a language, a cwd, env, and a live interpreter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use hybox_wasi_runtime::Context;

/// The API language of a context (TypeScript runs as JavaScript after type stripping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiLanguage {
    /// Python.
    Python,
    /// JavaScript.
    Javascript,
    /// TypeScript.
    Typescript,
}

impl ApiLanguage {
    /// Parses the API name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "python" | "python3" | "py" => Some(Self::Python),
            "javascript" | "js" => Some(Self::Javascript),
            "typescript" | "ts" => Some(Self::Typescript),
            _ => None,
        }
    }
}

/// A context of a sandbox.
#[derive(Debug)]
pub struct CodeContext {
    /// Its id (unique in the sandbox).
    pub id: String,
    /// Its language.
    pub language: ApiLanguage,
    /// Its working directory (guest path).
    pub cwd: String,
    /// Its own env (above the sandbox's).
    pub env: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: String,
    /// How many runs it has served.
    pub runs: AtomicU64,
    /// The interpreter.
    pub live: Arc<Context>,
}

/// The API view of a context.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextInfo {
    /// Id.
    pub id: String,
    /// Language.
    pub language: ApiLanguage,
    /// Working directory.
    pub cwd: String,
    /// Creation time.
    pub created_at: String,
    /// Runs so far.
    pub execution_count: u64,
}

impl CodeContext {
    /// Its API view.
    #[must_use]
    pub fn info(&self) -> ContextInfo {
        ContextInfo {
            id: self.id.clone(),
            language: self.language,
            cwd: self.cwd.clone(),
            created_at: self.created_at.clone(),
            execution_count: self.runs.load(Ordering::Relaxed),
        }
    }
}
