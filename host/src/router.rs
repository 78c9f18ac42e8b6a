//! The router decides, once per request and before anything runs, which route takes it, and
//! says why when it declines the wasm route.
//!
//! For `exec` the shell planner (`hybox_wasi_runtime::shell`) parses the command line with a
//! real shell parser; the wasm route takes it when every program in it is one the guests
//! provide (toolbox commands, `python3`, `node`) and no construct needs a real shell, and the
//! session's working directory is one the guests see. Otherwise the sandbox's container takes
//! it, and the reason is reported with the result; on a host without containers the caller gets
//! `ROUTE_UNAVAILABLE` with the planner's reason and the host's.

use hybox_wasi_runtime::shell::{self, Script, ShellPlan, programs};

use crate::api::error::ApiError;

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

/// Where a command runs.
#[derive(Debug)]
pub enum Decision {
    /// In wasm, as this script.
    Wasi(Script),
    /// In the sandbox's container, because of `reason`.
    Container {
        /// Why the wasm route did not take it (`uses program gcc`).
        reason: String,
    },
}

/// Plans `command` for the wasm route.
#[must_use]
pub fn plan(command: &str, has_toolbox: bool) -> ShellPlan {
    shell::plan(command, &|name| programs::provides(name, has_toolbox))
}

/// Whether a path is one the wasm guests see (`/workspace` and `/tmp` trees).
#[must_use]
pub fn wasm_sees(path: &str) -> bool {
    sees(path, &[])
}

fn sees(path: &str, extra: &[String]) -> bool {
    ["/workspace", "/tmp"]
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .chain(["/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr"])
        .any(|root| {
            let root = root.trim_end_matches('/');
            path == root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
        })
}

/// The first absolute path in `command` that the wasm guests do not see (`cat /etc/hosts`,
/// `cd /usr`), if any: such a command means the container's filesystem. A rough scan of the
/// words (quotes stripped, split at operators and `=`), which errs towards the container.
#[must_use]
pub fn foreign_path(command: &str, extra: &[String]) -> Option<String> {
    command
        .split(|c: char| c.is_whitespace() || ";|&<>()=`".contains(c))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .find(|w| w.starts_with('/') && !sees(w, extra))
        .map(str::to_owned)
}

/// Decides the route of `command` under `choice`, run from `cwd`; `extra` are more paths the
/// guests see (volumes); `containers` says whether the container route exists here (and why
/// not).
///
/// # Errors
/// [`ApiError::RouteUnavailable`] with the planner's reason when no route can run it.
pub fn route(
    command: &str,
    choice: RuntimeChoice,
    has_toolbox: bool,
    cwd: &str,
    extra: &[String],
    containers: Result<(), &str>,
) -> Result<Decision, ApiError> {
    // Only a free choice moves a command for its paths: forced into wasm, it runs there and
    // sees what the guests see.
    let foreign = (containers.is_ok() && choice == RuntimeChoice::Auto)
        .then(|| foreign_path(command, extra))
        .flatten();
    let plan = if choice == RuntimeChoice::Container {
        ShellPlan::Decline("runtime container was requested".into())
    } else if cwd != "/" && !sees(cwd, extra) {
        ShellPlan::Decline(format!(
            "the working directory {cwd} is only in the container"
        ))
    } else if let Some(path) = foreign {
        ShellPlan::Decline(format!("uses path {path}, which only the container has"))
    } else {
        plan(command, has_toolbox)
    };
    match (plan, choice) {
        (ShellPlan::Run(script), _) => Ok(Decision::Wasi(script)),
        (ShellPlan::Decline(reason), RuntimeChoice::Wasi) => Err(ApiError::RouteUnavailable {
            message: format!("runtime wasi cannot run this command: {reason}"),
            route_reason: reason,
        }),
        (ShellPlan::Decline(reason), RuntimeChoice::Auto | RuntimeChoice::Container) => {
            match containers {
                Ok(()) => Ok(Decision::Container { reason }),
                Err(why) => Err(ApiError::RouteUnavailable {
                    message: format!("{reason}; the container route is unavailable here: {why}"),
                    route_reason: reason,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(cmd: &str, choice: RuntimeChoice) -> String {
        match route(cmd, choice, true, "/workspace", &[], Err("no runc")) {
            Err(ApiError::RouteUnavailable { route_reason, .. }) => route_reason,
            other => panic!("{cmd}: expected a refusal, got {other:?}"),
        }
    }

    fn container(cmd: &str, choice: RuntimeChoice, cwd: &str) -> String {
        match route(cmd, choice, true, cwd, &[], Ok(())) {
            Ok(Decision::Container { reason }) => reason,
            other => panic!("{cmd}: expected the container, got {other:?}"),
        }
    }

    #[test]
    fn light_commands_go_to_wasm_and_the_rest_to_the_container_or_a_reason() {
        for ok in [
            "ls -la",
            "cat data.csv | head -5 | wc -l",
            "mkdir -p out && echo done > out/log.txt",
            "cd src; python3 main.py",
            "FOO=1 env | grep FOO",
            "python3 -c 'print(1)'",
            "node app.js",
        ] {
            assert!(
                matches!(
                    route(ok, RuntimeChoice::Auto, true, "/workspace", &[], Ok(())),
                    Ok(Decision::Wasi(_))
                ),
                "{ok}"
            );
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
        let ApiError::RouteUnavailable { message, .. } = route(
            "gcc x.c",
            RuntimeChoice::Wasi,
            true,
            "/workspace",
            &[],
            Ok(()),
        )
        .expect_err("refused") else {
            panic!("wrong error");
        };
        assert_eq!(
            message,
            "runtime wasi cannot run this command: uses program gcc"
        );
        let ApiError::RouteUnavailable { message, .. } = route(
            "gcc x.c",
            RuntimeChoice::Auto,
            true,
            "/workspace",
            &[],
            Err("needs root"),
        )
        .expect_err("refused") else {
            panic!("wrong error");
        };
        assert_eq!(
            message,
            "uses program gcc; the container route is unavailable here: needs root"
        );
        // With containers, what wasm declines runs there, with the reason kept.
        assert_eq!(
            container("gcc x.c", RuntimeChoice::Auto, "/workspace"),
            "uses program gcc"
        );
        assert_eq!(
            container("ls", RuntimeChoice::Container, "/workspace"),
            "runtime container was requested"
        );
        assert_eq!(
            container("ls", RuntimeChoice::Auto, "/usr/src"),
            "the working directory /usr/src is only in the container"
        );
        assert_eq!(
            container("cd /usr && ls", RuntimeChoice::Auto, "/workspace"),
            "uses path /usr, which only the container has"
        );
        assert_eq!(
            container(
                "cat '/etc/os-release' > /dev/null",
                RuntimeChoice::Auto,
                "/workspace"
            ),
            "uses path /etc/os-release, which only the container has"
        );
        assert!(matches!(
            route(
                "ls /data /workspace/x 2>/dev/null",
                RuntimeChoice::Auto,
                true,
                "/workspace",
                &["/data".to_owned()],
                Ok(())
            ),
            Ok(Decision::Wasi(_))
        ));
        // Without containers the wasm route still takes it (and reports the missing file).
        assert!(matches!(
            route(
                "cat /etc/hosts",
                RuntimeChoice::Auto,
                true,
                "/workspace",
                &[],
                Err("x")
            ),
            Ok(Decision::Wasi(_))
        ));
        assert!(
            wasm_sees("/tmp/x")
                && wasm_sees("/workspace")
                && !wasm_sees("/workspacex")
                && !wasm_sees("/")
        );
        // Without the toolbox only interpreters run in wasm.
        assert!(matches!(
            route(
                "python3 -c 1",
                RuntimeChoice::Auto,
                false,
                "/workspace",
                &[],
                Ok(())
            ),
            Ok(Decision::Wasi(_))
        ));
        assert!(
            route(
                "ls",
                RuntimeChoice::Auto,
                false,
                "/workspace",
                &[],
                Err("x")
            )
            .is_err()
        );
    }
}
