//! The router decides, once per request and before anything runs, which route takes it, and
//! says why when it declines the wasm route.
//!
//! For `exec` the shell planner (`hybox_wasi_runtime::shell`) parses the command line with a
//! real shell parser; the wasm route takes it when every program in it is one the guests
//! provide (toolbox commands, `python3`, `node`) and no construct needs a real shell. Otherwise
//! the container route would take it; until that route exists the caller gets
//! `ROUTE_UNAVAILABLE` with the planner's reason.

use hybox_wasi_runtime::shell::{self, Script, ShellPlan, programs};

use crate::api::error::ApiError;
use crate::backend::container;

/// The explicit `runtime` option of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Wasm when it can, else the container.
    #[default]
    Auto,
    /// Wasm or an error.
    Wasi,
    /// The container.
    Container,
}

/// Plans `command` for the wasm route.
#[must_use]
pub fn plan(command: &str, has_toolbox: bool) -> ShellPlan {
    shell::plan(command, &|name| programs::provides(name, has_toolbox))
}

/// Decides the route of `command` under `choice`: the script to run in wasm, or the error that
/// says why nothing can run it.
///
/// # Errors
/// [`ApiError::RouteUnavailable`] with the planner's reason.
pub fn route(command: &str, choice: RuntimeChoice, has_toolbox: bool) -> Result<Script, ApiError> {
    match (plan(command, has_toolbox), choice) {
        (ShellPlan::Run(_), RuntimeChoice::Container) => {
            Err(container::unavailable("runtime container was requested"))
        }
        (ShellPlan::Run(script), _) => Ok(script),
        (ShellPlan::Decline(reason), RuntimeChoice::Wasi) => Err(ApiError::RouteUnavailable {
            message: format!("runtime wasi cannot run this command: {reason}"),
            route_reason: reason,
        }),
        (ShellPlan::Decline(reason), RuntimeChoice::Auto | RuntimeChoice::Container) => {
            Err(container::unavailable(&reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(cmd: &str, choice: RuntimeChoice) -> String {
        match route(cmd, choice, true) {
            Err(ApiError::RouteUnavailable { route_reason, .. }) => route_reason,
            other => panic!("{cmd}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn light_commands_go_to_wasm_and_the_rest_is_refused_with_a_reason() {
        for ok in [
            "ls -la",
            "cat data.csv | head -5 | wc -l",
            "mkdir -p out && echo done > out/log.txt",
            "cd src; python3 main.py",
            "FOO=1 env | grep FOO",
            "python3 -c 'print(1)'",
            "node app.js",
        ] {
            assert!(route(ok, RuntimeChoice::Auto, true).is_ok(), "{ok}");
        }
        assert_eq!(
            reason("gcc hello.c", RuntimeChoice::Auto),
            "uses program gcc"
        );
        assert_eq!(
            reason("apt-get install x", RuntimeChoice::Auto),
            "uses program apt-get"
        );
        assert_eq!(
            reason("echo $(id)", RuntimeChoice::Auto),
            "uses command substitution"
        );
        assert_eq!(
            reason("ls", RuntimeChoice::Container),
            "runtime container was requested"
        );
        let ApiError::RouteUnavailable { message, .. } =
            route("gcc x.c", RuntimeChoice::Wasi, true).expect_err("refused")
        else {
            panic!("wrong error");
        };
        assert_eq!(
            message,
            "runtime wasi cannot run this command: uses program gcc"
        );
        // Without the toolbox only interpreters run in wasm.
        assert!(route("python3 -c 1", RuntimeChoice::Auto, false).is_ok());
        assert!(route("ls", RuntimeChoice::Auto, false).is_err());
    }
}
