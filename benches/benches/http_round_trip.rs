//! Round trips to a real `hybox serve` over one keep-alive HTTP/1.1 connection on loopback:
//! `GET /v1/health` (the HTTP layer alone) and `POST /v1/sandboxes/{sb}/contexts/{ctx}/run`
//! with `{"code":"1"}` (HTTP, routing, JSON and a warm Python context's turn). The server,
//! sandbox and context are made once, before any timing.
//!
//! Needs the `hybox` binary next to the bench binary (`cargo build --release --bins`) or
//! `HYBOX_BIN`; without it the bench says so and times nothing.

use criterion::{Criterion, criterion_group, criterion_main};
use hybox_benches::http::{Server, hybox_bin};

fn http_round_trip(c: &mut Criterion) {
    let Some(bin) = hybox_bin() else {
        eprintln!(
            "http_round_trip: skipped: no hybox binary next to the bench binary \
             (run `cargo build --release --bins` first, or set HYBOX_BIN)"
        );
        return;
    };
    let server = Server::start(&bin);
    let mut conn = server.connect();

    let sb = conn.request("PUT", "/v1/sandboxes/bench", Some("{}"));
    assert!(matches!(sb.status, 200 | 201), "{}", sb.text());
    let ctx = conn.request(
        "POST",
        "/v1/sandboxes/bench/contexts",
        Some(r#"{"language":"python"}"#),
    );
    assert_eq!(ctx.status, 201, "{}", ctx.text());
    let ctx = ctx.json()["id"].as_str().expect("context id").to_owned();
    let run_path = format!("/v1/sandboxes/bench/contexts/{ctx}/run");
    let body = r#"{"code":"1"}"#;
    let first = conn.request("POST", &run_path, Some(body));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["route"], "wasi", "{}", first.text());

    let mut group = c.benchmark_group("http_round_trip");
    group.bench_function("GET /v1/health", |b| {
        b.iter(|| {
            let a = conn.request("GET", "/v1/health", None);
            assert_eq!(a.status, 200);
            a
        });
    });
    group.bench_function("POST run {code:1}", |b| {
        b.iter(|| {
            let a = conn.request("POST", &run_path, Some(body));
            assert_eq!(a.status, 200);
            a
        });
    });
    group.finish();
}

criterion_group!(benches, http_round_trip);
criterion_main!(benches);
