//! `shell::plan` alone: parsing a command line with brush-parser and converting it to a script
//! (or a decline), as the router does for every `exec` before anything runs.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hybox_wasi_runtime::shell::{ShellPlan, plan, programs};

/// (name, line, whether the wasm route runs it).
const LINES: &[(&str, &str, bool)] = &[
    ("simple", "ls -la", true),
    ("pipeline", "cat data.csv | head -5 | wc -l", true),
    (
        "list+redirects",
        "cd src && python3 main.py --n \"$N\" > out.txt 2>&1; echo done",
        true,
    ),
    ("declined", "gcc -O2 main.c -o main && ./main", false),
];

fn shell_plan(c: &mut Criterion) {
    let provides = |name: &str| programs::provides(name, true);
    let mut group = c.benchmark_group("shell_plan");
    for &(name, line, runs) in LINES {
        assert_eq!(
            matches!(plan(line, &provides), ShellPlan::Run(_)),
            runs,
            "{line}"
        );
        group.bench_function(name, |b| b.iter(|| plan(black_box(line), &provides)));
    }
    group.finish();
}

criterion_group!(benches, shell_plan);
criterion_main!(benches);
