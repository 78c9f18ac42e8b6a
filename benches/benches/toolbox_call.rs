//! A one-command shell script through the executor (`shell::run_script`): `echo hi` (a builtin,
//! run in the host) and `seq 10 | wc -l` (two toolbox guests connected by a pipe). The lines are
//! planned once, outside the timing; each iteration runs the script on a fresh copy of the
//! session state.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hybox_benches::{Workspace, planned, runtime};
use hybox_wasi_runtime::RunLimits;
use hybox_wasi_runtime::shell::{ShellState, run_script};

fn toolbox_call(c: &mut Criterion) {
    let rt = runtime();
    let ws = Workspace::new();
    let base = ws.spec();
    let limits = RunLimits::default();
    let state = ShellState::new("/workspace", []);
    let mut group = c.benchmark_group("toolbox_call");
    for (line, expected) in [("echo hi", "hi\n"), ("seq 10 | wc -l", "10\n")] {
        let script = planned(&rt, line);
        let mut st = state.clone();
        let out = run_script(&rt, &base, &script, &mut st, &limits, None).expect("script");
        assert_eq!(
            (out.exit_code, out.stdout.concat().trim_start()),
            (Some(0), expected),
            "{line}: {out:?}"
        );
        group.bench_function(line, |b| {
            b.iter_batched(
                || state.clone(),
                |mut st| run_script(&rt, &base, &script, &mut st, &limits, None).expect("script"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, toolbox_call);
criterion_main!(benches);
