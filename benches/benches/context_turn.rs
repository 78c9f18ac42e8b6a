//! One turn of a warm context: `x + 1` in a Python context, `1 + 1` in a JavaScript one. The
//! context is started (and checked) once, outside the timing; each iteration is one
//! `Context::run`, the run a `POST .../run` does under the HTTP layer.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hybox_benches::{Workspace, first_text, runtime};
use hybox_wasi_runtime::{Context, Language, RunLimits};

fn context_turn(c: &mut Criterion) {
    let rt = runtime();
    let ws = Workspace::new();
    let limits = RunLimits::default();
    let mut group = c.benchmark_group("context_turn");

    let py = Context::start(&rt, Language::Python, ws.spec()).expect("python context");
    let defined = py.run("x = 41", &limits, None).expect("run");
    assert!(defined.outcome.error.is_none(), "{:?}", defined.outcome);
    assert_eq!(
        first_text(&py.run("x + 1", &limits, None).expect("run")),
        "42"
    );
    group.bench_function("python x+1", |b| {
        b.iter(|| py.run(black_box("x + 1"), &limits, None).expect("run"));
    });

    let js = Context::start(&rt, Language::JavaScript, ws.spec()).expect("javascript context");
    assert_eq!(
        first_text(&js.run("1 + 1", &limits, None).expect("run")),
        "2"
    );
    group.bench_function("javascript 1+1", |b| {
        b.iter(|| js.run(black_box("1 + 1"), &limits, None).expect("run"));
    });

    group.finish();
}

criterion_group!(benches, context_turn);
criterion_main!(benches);
