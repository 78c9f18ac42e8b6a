//! Starting a context: a new interpreter instance from the pooling allocator (copy-on-write
//! from the precompiled, pre-initialised module) plus the shim's first turn (for JavaScript,
//! entering the cwd). Each iteration times `Context::start` alone: the context is dropped
//! after the clock stops, and the guest is given a moment to hand its pool slot back before
//! the next start, so a start does not pay for the previous context's teardown.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hybox_benches::{Workspace, runtime};
use hybox_wasi_runtime::{Context, Language};

/// Untimed pause after a drop: a Python context's instance is torn down on its own thread.
const SETTLE: Duration = Duration::from_millis(5);

fn instantiate(c: &mut Criterion) {
    let rt = runtime();
    let ws = Workspace::new();
    let mut group = c.benchmark_group("instantiate");
    group.sample_size(20);
    for (name, language) in [
        ("python", Language::Python),
        ("javascript", Language::JavaScript),
    ] {
        // One untimed start first: the module's first instantiation maps its image.
        drop(Context::start(&rt, language, ws.spec()).expect("context"));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let spec = ws.spec();
                    let started = Instant::now();
                    let ctx = Context::start(&rt, language, spec).expect("context");
                    total += started.elapsed();
                    drop(ctx);
                    std::thread::sleep(SETTLE);
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
