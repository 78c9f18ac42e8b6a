//! Sandbox lifecycle, persistence across restarts, auth.

use serde_json::json;

use hybox_tests::Server;

#[test]
fn get_or_create_list_get_delete() {
    let s = Server::start();
    let a = s.put("/v1/sandboxes/alpha", &json!({"env": {"A": "1"}}));
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json["created"], true);
    assert_eq!(a.json["env"]["A"], "1");
    let again = s.put("/v1/sandboxes/alpha", &json!({}));
    assert_eq!(again.status, 200);
    assert_eq!(again.json["created"], false);
    assert_eq!(again.json["createdAt"], a.json["createdAt"]);
    let _ = s.sandbox("beta");
    let list = s.get("/v1/sandboxes");
    let ids: Vec<&str> = list.json["sandboxes"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);
    assert_eq!(s.get("/v1/sandboxes/alpha").json["id"], "alpha");
    let w = s.post(
        "/v1/sandboxes/alpha/files/write",
        &json!({"path": "a.txt", "content": "x"}),
    );
    assert_eq!(w.status, 200, "{w:?}");
    assert!(s.workspace("alpha").join("a.txt").exists());
    let d = s.delete("/v1/sandboxes/alpha");
    assert_eq!(d.status, 200);
    assert!(
        !s.data_dir.join("sandboxes/alpha").exists(),
        "files destroyed"
    );
    let gone = s.get("/v1/sandboxes/alpha");
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (404, Some("SANDBOX_NOT_FOUND"))
    );
    assert_eq!(s.delete("/v1/sandboxes/alpha").status, 404);
}

#[test]
fn invalid_ids_and_routes_have_stable_codes() {
    let s = Server::start();
    for bad in [
        "UPPER",
        "-lead",
        "trail-",
        "under_score",
        "dot.ted",
        &"x".repeat(64),
    ] {
        let a = s.put(&format!("/v1/sandboxes/{bad}"), &json!({}));
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (400, Some("INVALID_SANDBOX_ID")),
            "{bad}"
        );
    }
    let a = s.get("/v1/nothing");
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let a = s.post("/v1/sandboxes", &json!({}));
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
    let _ = s.sandbox("x");
    let a = s.put_bytes("/v1/sandboxes/x/contexts", b"{}");
    assert_eq!(a.status, 405);
    let a = s.put("/v1/sandboxes/y", &json!({"bogus": 1}));
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    let a = s.put_bytes("/v1/sandboxes/y", b"{not json");
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    for body in [&json!({"code": "1"}), &json!({})] {
        let a = s.post("/v1/sandboxes/nope/run", body);
        assert!(a.status == 404 || a.status == 400, "{a:?}");
    }
}

#[test]
fn sandboxes_and_files_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), &[]);
    assert_eq!(
        s.put("/v1/sandboxes/keep", &json!({"env": {"K": "v"}}))
            .status,
        201
    );
    let w = s.post(
        "/v1/sandboxes/keep/files/write",
        &json!({"path": "/workspace/d/n.txt", "content": "persisted"}),
    );
    assert_eq!(w.status, 200, "{w:?}");
    let c = s.post(
        "/v1/sandboxes/keep/contexts",
        &json!({"language": "python"}),
    );
    assert_eq!(c.status, 201);
    s.kill();
    let s2 = Server::start_in(dir.path(), &[]);
    let sb = s2.get("/v1/sandboxes/keep");
    assert_eq!(sb.status, 200);
    assert_eq!(sb.json["env"]["K"], "v");
    let r = s2.post("/v1/sandboxes/keep/files/read", &json!({"path": "d/n.txt"}));
    assert_eq!(r.json["content"], "persisted");
    // Live interpreter contexts do not survive a restart, and the API says so by listing none.
    assert_eq!(s2.get("/v1/sandboxes/keep/contexts").json["count"], 0);
    // The wasm route still sees the files.
    let e = s2.post(
        "/v1/sandboxes/keep/exec",
        &json!({"command": "python3 -c \"print(open('d/n.txt').read())\""}),
    );
    assert_eq!(e.json["stdout"], "persisted\n", "{e:?}");
}

#[test]
fn token_is_required_beyond_loopback_and_checked_when_set() {
    // Beyond loopback without a token: refused at start.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(hybox_tests::hybox_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("HYBOX_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
    // With a token: requests without it, or with a wrong one, are refused.
    let s = Server::start_in(dir.path(), &["--token", "s3cret"]);
    assert_eq!(s.get("/v1/sandboxes").status, 200);
    for bad in [
        "",
        "Bearer nope",
        "Bearer s3cre",
        "Bearer s3crett",
        "Basic s3cret",
        "s3cret",
    ] {
        let a = s.get_with_auth("/v1/sandboxes", bad);
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{bad:?}"
        );
    }
}

#[test]
fn memory_limit_is_validated() {
    let s = Server::start();
    for bad in [0_u64, 63, 2049, 1 << 40] {
        let a = s.put(
            "/v1/sandboxes/m",
            &serde_json::json!({"memoryLimitMb": bad}),
        );
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad}"
        );
    }
    let a = s.put(
        "/v1/sandboxes/m",
        &serde_json::json!({"memoryLimitMb": 256}),
    );
    assert_eq!(
        (a.status, a.json["memoryLimitMb"].as_u64()),
        (201, Some(256))
    );
}
