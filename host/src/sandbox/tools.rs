//! Host tools a sandbox's guests may call through the door (`call-tool` of `wit/hybox.wit`).

use serde_json::{Value, json};

use hybox_wasi_runtime::ToolHost;

/// The tools of one sandbox.
#[derive(Debug)]
pub struct SandboxTools {
    id: String,
}

/// Names of the tools offered, for error messages and docs.
pub const TOOLS: &[&str] = &["sandbox.info", "tools.list"];

impl SandboxTools {
    /// Tools for sandbox `id`.
    #[must_use]
    pub fn new(id: &str) -> Self {
        Self { id: id.to_owned() }
    }
}

impl ToolHost for SandboxTools {
    fn call(&self, name: &str, args_json: &str) -> Result<String, String> {
        let _args: Value = serde_json::from_str(if args_json.is_empty() {
            "{}"
        } else {
            args_json
        })
        .map_err(|e| format!("arguments are not JSON: {e}"))?;
        match name {
            "sandbox.info" => Ok(json!({
                "sandboxId": self.id,
                "workspace": "/workspace",
                "hybox": env!("CARGO_PKG_VERSION"),
            })
            .to_string()),
            "tools.list" => Ok(json!(TOOLS).to_string()),
            other => Err(format!(
                "no tool named {other} (available: {})",
                TOOLS.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_answer_json_or_a_clear_error() {
        let t = SandboxTools::new("box");
        let info: Value =
            serde_json::from_str(&t.call("sandbox.info", "{}").expect("info")).expect("json");
        assert_eq!(info["sandboxId"], "box");
        assert!(
            t.call("nope", "{}")
                .expect_err("unknown")
                .contains("available: sandbox.info")
        );
        assert!(
            t.call("sandbox.info", "{oops")
                .expect_err("bad args")
                .contains("not JSON")
        );
    }
}
