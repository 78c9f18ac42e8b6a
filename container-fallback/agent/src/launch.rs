//! What every started program shares: argv, the whole environment, a checked working
//! directory, a program resolved up front (so "not found" is a clear refusal, not an exec
//! failure), and the threads that pump its pipes.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::Sender;

use crate::Fail;
use crate::proto::{CHUNK, Map};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program to start.
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

impl Launch {
    /// From request fields `argv`, `env`, `cwd`.
    pub fn from_map(m: &Map) -> Result<Launch, Fail> {
        let cwd = m.str_or_empty("cwd")?;
        Ok(Launch {
            argv: m.strings("argv")?,
            env: m.pairs("env")?,
            cwd: if cwd.is_empty() {
                "/".to_owned()
            } else {
                cwd.to_owned()
            },
        })
    }

    /// The command, with a cleared environment; refused when the cwd or the program is wrong.
    pub fn command(&self) -> Result<Command, Fail> {
        let Some(argv0) = self.argv.first() else {
            return Err(Fail::Refused("empty argv".into()));
        };
        match fs::metadata(&self.cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Fail::Refused(format!("cwd {}: not a directory", self.cwd)));
            }
            Err(e) => return Err(Fail::Refused(format!("cwd {}: {e}", self.cwd))),
        }
        let path_var = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let program = resolve(argv0, path_var, Path::new(&self.cwd))?;
        let mut cmd = Command::new(program);
        cmd.arg0(argv0)
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd);
        Ok(cmd)
    }
}

fn executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn resolve(argv0: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, Fail> {
    if argv0.is_empty() {
        return Err(Fail::Refused("empty program name".into()));
    }
    if argv0.contains('/') {
        let p = cwd.join(argv0);
        return match fs::metadata(&p) {
            Err(e) => Err(Fail::Refused(format!("{argv0}: {e}"))),
            Ok(_) if !executable(&p) => {
                Err(Fail::Refused(format!("{argv0}: not an executable file")))
            }
            Ok(_) => Ok(p),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { cwd } else { Path::new(dir) };
        let p = dir.join(argv0);
        if executable(&p) {
            return Ok(if p.is_absolute() { p } else { cwd.join(p) });
        }
    }
    Err(Fail::Refused(format!("{argv0}: command not found")))
}

/// Starts a named thread; an error when the system has no more.
pub fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
}

/// Pumps `r` into `tx` in chunks as they come, then sends `eof`. Once `tx` is gone it keeps
/// draining, so a writer that outlives its reader (a background job of a finished command) is
/// not killed by SIGPIPE.
pub fn pump<R, E>(mut r: R, tx: Sender<E>, data: fn(Vec<u8>) -> E, eof: E) -> io::Result<()>
where
    R: Read + Send + 'static,
    E: Send + 'static,
{
    thread("pump", move || {
        let mut buf = vec![0u8; CHUNK];
        let mut live = true;
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if live && tx.send(data(buf[..n].to_vec())).is_err() {
                        live = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(eof);
    })
}
