//! docs/openapi.json against the real server, both ways: every operation the document lists is
//! served and answers as its schemas say, and every route the router serves is in the document.
//!
//! The schema checker below covers the JSON Schema the document uses (`$ref`, `allOf`, `oneOf`,
//! `anyOf`, `type`, `enum`, `const`, `required`, `properties`, `additionalProperties`, `items`,
//! `minimum`, `maximum`, `minLength`, `maxLength`); `pattern`, `format`, `minItems`, `maxItems`
//! and `contentMediaType` are not checked. Streams are read to their end, except the file watch,
//! which never ends by itself: it is kept open while the other operations run and must end with
//! `end` when the sandbox is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use hybox_tests::{Answer, Server};

const SANDBOX: &str = "openapi-check";
const SESSION: &str = "openapi-session";
/// An exec id no command has: cancelling it must be `EXEC_NOT_FOUND`, not an unknown route.
const NO_EXEC: &str = "exec-0000000000000000";
/// The `{name}` volume: mounted by nobody, so deleting it succeeds.
const VOLUME: &str = "openapi-volume";
/// A volume the fixture sandbox mounts (read-only at `/shared`): its `volumes` are not empty.
const MOUNTED: &str = "openapi-mounted";
/// The copy `forkSandbox` makes of the fixture sandbox.
const FORK: &str = "openapi-fork";
const METHODS: [&str; 4] = ["GET", "PUT", "POST", "DELETE"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn document() -> Value {
    serde_json::from_str(&read("docs/openapi.json")).expect("docs/openapi.json is JSON")
}

/// `/v1/sandboxes/{id}/contexts/{contextId}` → `/v1/sandboxes/{}/contexts/{}`.
fn normalise(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One operation of the document.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    id: String,
    op: Value,
    /// Path-level parameters followed by the operation's own.
    params: Vec<Value>,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, op) in item.as_object().expect("path item") {
            if ![
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                continue;
            }
            let mut params = shared.clone();
            params.extend(op["parameters"].as_array().cloned().unwrap_or_default());
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                id: op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
                    .to_owned(),
                op: op.clone(),
                params: params.iter().map(|p| resolve(doc, p).clone()).collect(),
            });
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The routes the router serves, read from its source.

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Param,
}

fn render(segs: &[Seg]) -> String {
    segs.iter()
        .map(|s| match s {
            Seg::Lit(l) => format!("/{l}"),
            Seg::Param => "/{}".to_owned(),
        })
        .collect()
}

/// A slice pattern's elements (`"contexts", ctx, "run"`); `None` for the element `rest @ ..`.
fn parse_slice(pat: &str, line: &str) -> Vec<Option<Seg>> {
    pat.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e == "rest @ .." {
                None
            } else if let Some(lit) = e.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
                assert!(
                    !lit.contains('"'),
                    "alternatives in a served route are not understood: {line}"
                );
                Some(Seg::Lit(lit.to_owned()))
            } else if e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Some(Seg::Param)
            } else {
                panic!("router pattern element {e:?} not understood: {line}")
            }
        })
        .collect()
}

/// `"a", x @ ("b" | "c")` → `["\"a\", \"b\"", "\"a\", \"c\""]`.
fn expand_alternatives(pat: &str) -> Vec<String> {
    let Some(at) = pat.find(" @ (") else {
        return vec![pat.to_owned()];
    };
    let start = pat[..at].rfind(',').map_or(0, |i| i + 1);
    let close = at + pat[at..].find(')').expect("closing paren");
    let alts = &pat[at + 4..close];
    alts.split('|')
        .map(|a| format!("{} {}{}", &pat[..start], a.trim(), &pat[close + 1..]))
        .flat_map(|p| expand_alternatives(&p))
        .collect()
}

/// `&Method::POST | &Method::PUT` → `["POST", "PUT"]`; `_` → none (the not-allowed arms).
fn parse_methods(text: &str, line: &str) -> Vec<String> {
    if text.trim() == "_" {
        return Vec::new();
    }
    text.split('|')
        .map(|m| {
            m.trim()
                .trim_start_matches('&')
                .strip_prefix("Method::")
                .unwrap_or_else(|| panic!("method {m:?} not understood: {line}"))
                .to_owned()
        })
        .collect()
}

/// The text of function `signature` in host/src/api/mod.rs, up to its closing brace.
fn router_fn(signature: &str) -> String {
    let src = read("host/src/api/mod.rs");
    let start = src
        .find(signature)
        .unwrap_or_else(|| panic!("{signature} in host/src/api/mod.rs"));
    let body = &src[start..];
    body[..body.find("\n}\n").map_or(body.len(), |i| i + 3)].to_owned()
}

/// The trimmed lines of `body`, with a match arm that rustfmt spread over several lines
/// (`(`, `["exec" | "run"`, `| "watch", ..],`, `_,`, `) => not_allowed(),`) joined into one
/// (`(["exec" | "run" | "watch", ..], _) => not_allowed(),`).
fn logical_lines(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in body.lines() {
        let t = line.trim();
        match &mut open {
            Some(parts) => {
                parts.push(t);
                if t.starts_with(") =>") {
                    let joined = format!("({}", parts.join(" "));
                    out.push(joined.replace(", )", ")").replace(",)", ")"));
                    open = None;
                }
            }
            None if t == "(" => open = Some(Vec::new()),
            None => out.push(t.to_owned()),
        }
    }
    assert!(open.is_none(), "a router arm that never ends: {open:?}");
    out
}

/// Parses the match arms of `route` in host/src/api/mod.rs:
/// `["v1", "health"] => match method { Method::GET => ... }` and, under
/// `["v1", "sandboxes", id, rest @ ..]`, `(["contexts", ctx, "run"], &Method::POST) => ...`.
/// Every line of the function that names a `Method::` must be understood.
fn router_routes() -> Vec<(String, Vec<Seg>)> {
    let body = router_fn("async fn route(");
    let mut routes = Vec::new();
    let mut prefix: Vec<Seg> = Vec::new();
    let mut nested = false;
    for line in logical_lines(&body) {
        let t = line.as_str();
        if let Some(rest) = t.strip_prefix("([") {
            assert!(nested, "inner arm outside `rest @ ..`: {t}");
            let (pat, after) = rest
                .split_once("], ")
                .unwrap_or_else(|| panic!("router arm not understood: {t}"));
            let (methods, _) = after
                .split_once(") =>")
                .unwrap_or_else(|| panic!("router arm not understood: {t}"));
            let methods = parse_methods(methods, t);
            if methods.is_empty() {
                continue; // `(..., _) => not_allowed()`
            }
            assert!(!pat.contains(".."), "open-ended served route: {t}");
            for pat in expand_alternatives(pat) {
                let mut segs = prefix.clone();
                segs.extend(
                    parse_slice(&pat, t)
                        .into_iter()
                        .map(|s| s.expect("no rest")),
                );
                for m in &methods {
                    routes.push((m.clone(), segs.clone()));
                }
            }
        } else if let Some(rest) = t.strip_prefix('[') {
            let (pat, _) = rest
                .split_once("] =>")
                .unwrap_or_else(|| panic!("router arm not understood: {t}"));
            let elems = parse_slice(pat, t);
            nested = elems.last().is_some_and(Option::is_none);
            prefix = elems.into_iter().flatten().collect();
        } else if t.starts_with("Method::") || t.starts_with("&Method::") {
            assert!(!nested, "method arm under `rest @ ..`: {t}");
            let (methods, _) = t
                .split_once("=>")
                .unwrap_or_else(|| panic!("router arm not understood: {t}"));
            for m in parse_methods(methods, t) {
                routes.push((m, prefix.clone()));
            }
        } else {
            assert!(
                !t.contains("Method::"),
                "a router line this test does not understand: {t}"
            );
        }
    }
    routes
}

/// The routes `serve` answers itself before `route` sees the request (an import is streamed
/// to disk rather than read into memory): every `parts.method == Method::X && ...path...
/// == "/v1/..."` condition of `serve`. Every `Method::` the function names must be in one.
fn serve_routes() -> Vec<(String, Vec<Seg>)> {
    let body = router_fn("pub async fn serve(");
    let marker = "parts.method == Method::";
    let mut routes = Vec::new();
    for (at, _) in body.match_indices(marker) {
        let cond = &body[at..];
        let cond = &cond[..cond.find('{').unwrap_or(cond.len())];
        let method: String = cond[marker.len()..]
            .chars()
            .take_while(char::is_ascii_uppercase)
            .collect();
        let path = cond
            .split("== \"")
            .nth(1)
            .and_then(|rest| rest.split_once('"'))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("special route not understood: {cond}"));
        assert!(
            path.starts_with("/v1/") && !method.is_empty(),
            "special route not understood: {cond}"
        );
        let segs = path
            .trim_matches('/')
            .split('/')
            .map(|s| Seg::Lit(s.to_owned()))
            .collect();
        routes.push((method, segs));
    }
    assert_eq!(
        body.matches("Method::").count(),
        routes.len(),
        "a `Method::` in `serve` this test does not understand"
    );
    routes
}

/// The names a handler dispatches a trailing path parameter on: the string-literal arms of
/// `match op {` in host/src/api/files.rs (`"rename" | "move" => ...`); the rest is `NOT_FOUND`.
fn dispatched_names(file: &str, marker: &str) -> Vec<String> {
    let src = read(file);
    let start = src
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {file}"));
    let mut names = Vec::new();
    let mut depth = 0i32;
    for line in src[start..].lines() {
        let t = line.trim();
        if depth == 1 && t.starts_with('"') {
            let (pat, _) = t
                .split_once("=>")
                .unwrap_or_else(|| panic!("arm not understood: {t}"));
            for alt in pat.split('|') {
                let name = alt
                    .trim()
                    .strip_prefix('"')
                    .and_then(|a| a.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("arm not understood: {t}"));
                names.push(name.to_owned());
            }
        }
        depth += i32::try_from(line.matches('{').count()).expect("count");
        depth -= i32::try_from(line.matches('}').count()).expect("count");
        if depth <= 0 {
            break;
        }
    }
    assert!(
        !names.is_empty(),
        "no arms found after {marker:?} in {file}"
    );
    names
}

/// `(METHOD, normalised path)` of every route served, with `POST .../files/{op}` expanded to
/// the operations its handler knows.
fn served() -> BTreeSet<(String, String)> {
    let file_ops = dispatched_names("host/src/api/files.rs", "match op {");
    let mut out = BTreeSet::new();
    for (method, segs) in router_routes().into_iter().chain(serve_routes()) {
        let path = render(&segs);
        if method == "POST" && path == "/v1/sandboxes/{}/files/{}" {
            for name in &file_ops {
                out.insert((method.clone(), format!("/v1/sandboxes/{{}}/files/{name}")));
            }
        } else {
            out.insert((method, path));
        }
    }
    out
}

#[test]
fn every_served_route_is_documented() {
    let served = served();
    assert!(
        served.len() >= 25,
        "router scrape found too little: {served:?}"
    );
    let documented: BTreeSet<(String, String)> = operations(&document())
        .iter()
        .map(|o| (o.method.clone(), normalise(&o.path)))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}\ndocumented but not served: {extra:?}"
    );
}

#[test]
fn document_is_well_formed() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    let ids: BTreeSet<&str> = ops.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids.len(), ops.len(), "operationIds are unique");
    for o in &ops {
        // Every `{name}` of the path is a declared path parameter, and nothing else is.
        let in_path: BTreeSet<&str> = o
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: BTreeSet<&str> = o
            .params
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_path, declared, "{} {}", o.method, o.path);
        let responses = o.op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2') || k == "101"),
            "{}: no success response",
            o.id
        );
        // Every error response is the common error schema.
        for (status, r) in responses {
            if status.starts_with('2') || status == "101" {
                continue;
            }
            let r = resolve(&doc, r);
            let schema = &r["content"]["application/json"]["schema"];
            let refs = schema["allOf"][0]["$ref"].as_str();
            assert_eq!(
                refs,
                Some("#/components/schemas/Error"),
                "{} {status}",
                o.id
            );
        }
        if o.path.starts_with("/v1/sandboxes/{id}") {
            let id = o.params.iter().find(|p| p["name"] == "id").expect("id");
            assert_eq!(
                id["schema"]["pattern"],
                "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
            );
        }
    }
    // Every `$ref` resolves.
    fn refs(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref") {
                    let _ = resolve(doc, &json!({ "$ref": r }));
                }
                m.values().for_each(|x| refs(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(doc, x)),
            _ => {}
        }
    }
    refs(&doc, &doc);
}

// ------------------------------------------------------------------------------------------
// A small JSON Schema checker.

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    schema
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

fn errors_of(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errs = Vec::new();
    check(doc, schema, v, at, &mut errs);
    errs
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let s = resolve(doc, schema);
    for sub in s["allOf"].as_array().into_iter().flatten() {
        check(doc, sub, v, at, errs);
    }
    if let Some(one) = s["oneOf"].as_array() {
        let n = one
            .iter()
            .filter(|sub| errors_of(doc, sub, v, at).is_empty())
            .count();
        if n != 1 {
            errs.push(format!("{at}: matches {n} of the oneOf alternatives: {v}"));
        }
    }
    if let Some(any) = s["anyOf"].as_array()
        && !any.iter().any(|sub| errors_of(doc, sub, v, at).is_empty())
    {
        errs.push(format!("{at}: matches none of anyOf: {v}"));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
        errs.push(format!("{at}: {v} is not of type {types:?}"));
        return;
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errs.push(format!("{at}: {v} is not {c}"));
    }
    if let Some(n) = v.as_f64() {
        if s["minimum"].as_f64().is_some_and(|m| n < m) {
            errs.push(format!("{at}: {n} < minimum {}", s["minimum"]));
        }
        if s["maximum"].as_f64().is_some_and(|m| n > m) {
            errs.push(format!("{at}: {n} > maximum {}", s["maximum"]));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s["minLength"].as_u64().is_some_and(|m| len < m) {
            errs.push(format!("{at}: shorter than minLength"));
        }
        if s["maxLength"].as_u64().is_some_and(|m| len > m) {
            errs.push(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(obj) = v.as_object() {
        for name in s["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("required names are strings");
            if !obj.contains_key(name) {
                errs.push(format!("{at}: required property {name:?} is missing"));
            }
        }
        let props = s["properties"].as_object();
        for (k, x) in obj {
            let here = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(ps), _) => check(doc, ps, x, &here, errs),
                (None, Some(Value::Bool(false))) => {
                    errs.push(format!("{here}: property not in the schema"));
                }
                (None, Some(extra @ Value::Object(_))) => check(doc, extra, x, &here, errs),
                (None, _) => {}
            }
        }
    }
    if let (Some(arr), Some(items)) = (v.as_array(), s.get("items")) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}

fn assert_valid(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let errs = errors_of(doc, schema, v, "$");
    assert!(
        errs.is_empty(),
        "{what} does not match its schema:\n  {}\nvalue: {v}",
        errs.join("\n  ")
    );
}

/// A minimal value of `schema`: required properties only (the first alternative of a
/// `oneOf` of required sets), first enum value, minimum of a number.
fn minimal(doc: &Value, schema: &Value) -> Value {
    let s = resolve(doc, schema);
    if let Some(e) = s["enum"].as_array().and_then(|e| e.first()) {
        return e.clone();
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    let t = match &s["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.first().and_then(Value::as_str).unwrap_or("null"),
        _ => "object",
    };
    match t {
        "object" => {
            let mut required: Vec<&Value> =
                s["required"].as_array().into_iter().flatten().collect();
            for all in s["allOf"].as_array().into_iter().flatten() {
                if let Some(first) = all["oneOf"].as_array().and_then(|o| o.first()) {
                    required.extend(first["required"].as_array().into_iter().flatten());
                }
            }
            if let Some(first) = s["oneOf"].as_array().and_then(|o| o.first()) {
                required.extend(first["required"].as_array().into_iter().flatten());
            }
            let mut out = Map::new();
            for name in required {
                let name = name.as_str().expect("required names are strings");
                let prop = &s["properties"][name];
                out.insert(name.to_owned(), minimal(doc, prop));
            }
            Value::Object(out)
        }
        "array" => json!([]),
        "string" => json!("x"),
        "integer" | "number" => s["minimum"].as_u64().map_or(json!(1), |m| json!(m.max(1))),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

// ------------------------------------------------------------------------------------------
// The document against a live server.

/// Bodies that make each operation succeed on the fixtures; an operation not listed gets the
/// minimal body of its request schema.
fn body_for(op_id: &str) -> Option<Value> {
    Some(match op_id {
        "putSandbox" => json!({ "env": { "A": "1" } }),
        "exec" => json!({ "command": "echo hi && pwd" }),
        "createSession" => json!({ "id": "openapi-created", "cwd": "/tmp" }),
        "setSessionEnv" => json!({ "env": { "A": "1", "B": null } }),
        "putSessionEnv" => json!({ "envVars": { "C": "3" } }),
        "runCode" | "runInContext" => json!({ "code": "print('x')\n40 + 2" }),
        "createContext" => json!({ "language": "python" }),
        "writeFile" => {
            json!({ "path": "openapi/written.bin", "content": "aGk=", "encoding": "base64" })
        }
        "readFile" | "fileExists" | "statFile" => json!({ "path": "openapi/a.txt" }),
        "makeDirectory" => json!({ "path": "openapi/new/dir", "recursive": true }),
        "deleteFile" => json!({ "path": "openapi/to-delete.txt" }),
        "renameFile" => {
            json!({ "oldPath": "openapi/to-rename.txt", "newPath": "openapi/renamed.txt" })
        }
        "moveFile" => {
            json!({ "sourcePath": "openapi/to-move.txt", "destinationPath": "openapi/into" })
        }
        "listFiles" => json!({ "path": "openapi", "recursive": true }),
        "createSnapshot" => {
            json!({ "dir": "/workspace/openapi", "name": "openapi-created", "ttl": 3600 })
        }
        "forkSandbox" => json!({ "ids": [FORK] }),
        "startProcess" => json!({ "command": "sleep 1", "processId": "openapi-started" }),
        "waitForPort" => json!({ "port": 8765, "timeout": 20000 }),
        "waitForLog" => json!({ "pattern": "read+y", "timeout": 20000 }),
        "waitForExit" => json!({ "timeout": 20000 }),
        "exposePort" => json!({ "port": 8765, "name": "web" }),
        "gitCheckout" => json!({ "repoUrl": "/workspace/openapi/nope.git" }),
        _ => return None,
    })
}

/// Operations that are expected to fail on the fixtures, with their code.
fn expected_error(op_id: &str) -> Option<&'static str> {
    match op_id {
        "cancelExec" => Some("EXEC_NOT_FOUND"),
        "openTerminal" => Some("INVALID_REQUEST"),
        _ => None,
    }
}

#[derive(Debug)]
struct Fixtures {
    params: BTreeMap<&'static str, String>,
    query: BTreeMap<&'static str, String>,
    /// Values for one operation only, looked up before `params` and `query`: each delete of a
    /// snapshot gets a snapshot of its own (so the order the deletions run in does not matter),
    /// the watch its own `path`.
    only: BTreeMap<(&'static str, &'static str), String>,
    /// A valid `.sqfs` file (an export of the fixture snapshot): the body of `importSnapshot`.
    sqfs: Vec<u8>,
}

impl Fixtures {
    fn value(&self, op_id: &str, location: &str, name: &str) -> Option<&String> {
        self.only
            .iter()
            .find(|((o, n), _)| *o == op_id && *n == name)
            .map(|(_, v)| v)
            .or_else(|| match location {
                "path" => self.params.get(name),
                _ => self.query.get(name),
            })
    }
}

fn fixtures(s: &Server) -> Fixtures {
    for v in [VOLUME, MOUNTED] {
        let a = s.put(&format!("/v1/volumes/{v}"), &json!({}));
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = s.put(
        &format!("/v1/sandboxes/{SANDBOX}"),
        &json!({ "volumes": [{ "name": MOUNTED, "path": "/shared", "readOnly": true }] }),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let sb = SANDBOX.to_owned();
    let base = format!("/v1/sandboxes/{sb}");
    let ctx = s.post(&format!("{base}/contexts"), &json!({}));
    assert_eq!(ctx.status, 201, "{ctx:?}");
    let sess = s.post(&format!("{base}/sessions"), &json!({ "id": SESSION }));
    assert_eq!(sess.status, 201, "{sess:?}");
    for f in [
        "a.txt",
        "raw.txt",
        "to-delete.txt",
        "to-rename.txt",
        "to-move.txt",
    ] {
        let a = s.post(
            &format!("{base}/files/write"),
            &json!({ "path": format!("openapi/{f}"), "content": "hello" }),
        );
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = s.post(
        &format!("{base}/processes"),
        &json!({ "processId": "openapi-web", "command": "echo ready; exec python3 -m http.server 8765 --bind 127.0.0.1" }),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = s.post(
        &format!("{base}/processes"),
        &json!({ "processId": "openapi-short", "command": "echo done" }),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = s.post(
        &format!("{base}/files/mkdir"),
        &json!({ "path": "openapi/into" }),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let snapshot = |name: &str| {
        let a = s.post(&format!("{base}/snapshots"), &json!({ "name": name }));
        assert_eq!(a.status, 201, "{a:?}");
        a.json["id"].as_str().expect("snapshot id").to_owned()
    };
    // Read, restored and exported, never deleted.
    let kept = snapshot("openapi-kept");
    let export = s.get(&format!("/v1/snapshots/{kept}/export"));
    assert_eq!(export.status, 200, "{}", export.json);
    assert!(export.bytes.starts_with(b"hsqs"), "not a squashfs image");
    Fixtures {
        params: BTreeMap::from([
            ("id", sb),
            (
                "contextId",
                ctx.json["id"].as_str().expect("context id").to_owned(),
            ),
            ("sessionId", SESSION.to_owned()),
            ("execId", NO_EXEC.to_owned()),
            ("snapshotId", kept),
            ("name", VOLUME.to_owned()),
            ("processId", "openapi-web".to_owned()),
            ("port", "8765".to_owned()),
        ]),
        query: BTreeMap::from([("path", "openapi/raw.txt".to_owned())]),
        only: BTreeMap::from([
            (("deleteSnapshot", "snapshotId"), snapshot("openapi-delete")),
            (
                ("deleteSandboxSnapshot", "snapshotId"),
                snapshot("openapi-delete-2"),
            ),
            (("watchFiles", "path"), "/workspace/openapi".to_owned()),
            (("watchFiles", "recursive"), "true".to_owned()),
            (("watchFiles", "include"), "*.txt".to_owned()),
            (("importSnapshot", "name"), "openapi-imported".to_owned()),
            (("waitForExit", "processId"), "openapi-short".to_owned()),
        ]),
        sqfs: export.bytes,
    }
}

fn concrete_path(o: &Operation, fx: &Fixtures) -> String {
    let mut path = o.path.clone();
    let mut query = Vec::new();
    for p in &o.params {
        let name = p["name"].as_str().expect("parameter name");
        let location = p["in"].as_str();
        let value = fx.value(&o.id, location.unwrap_or(""), name);
        match location {
            Some("path") => {
                let v = value
                    .unwrap_or_else(|| panic!("{}: no fixture for path parameter {name}", o.id));
                path = path.replace(&format!("{{{name}}}"), v);
            }
            Some("query") => {
                if let Some(v) = value {
                    query.push(format!("{name}={v}"));
                } else {
                    assert!(
                        p["required"] != true,
                        "{}: no fixture for query parameter {name}",
                        o.id
                    );
                }
            }
            other => panic!("{}: parameter location {other:?}", o.id),
        }
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Whether `path` (no query) is one the path template `template` describes.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

#[derive(Debug)]
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

fn request_body(doc: &Value, o: &Operation, fx: &Fixtures) -> Body {
    let Some(rb) = o.op.get("requestBody") else {
        return Body::None;
    };
    let rb = resolve(doc, rb);
    let content = rb["content"].as_object().expect("requestBody content");
    if let Some(media) = content.get("application/json") {
        let body = body_for(&o.id).unwrap_or_else(|| minimal(doc, &media["schema"]));
        assert_valid(
            doc,
            &media["schema"],
            &body,
            &format!("request body of {}", o.id),
        );
        Body::Json(body)
    } else if content.contains_key("application/octet-stream") {
        if o.id == "importSnapshot" {
            Body::Bytes(fx.sqfs.clone())
        } else {
            Body::Bytes(b"raw \x00\xff bytes".to_vec())
        }
    } else {
        panic!("{}: request content {:?}", o.id, content.keys());
    }
}

fn send(s: &Server, method: &str, path: &str, body: &Body) -> Answer {
    match (method, body) {
        ("GET", Body::None) => s.get(path),
        ("DELETE", Body::None) => s.delete(path),
        ("POST", Body::None) => s.post(path, &json!({})),
        ("POST", Body::Json(v)) => s.post(path, v),
        ("POST", Body::Bytes(b)) => s.post_bytes(path, b),
        ("PUT", Body::None) => s.put_bytes(path, b""),
        ("PUT", Body::Json(v)) => s.put(path, v),
        ("PUT", Body::Bytes(b)) => s.put_bytes(path, b),
        other => panic!("the harness cannot send {other:?}"),
    }
}

/// Not served: the server's answer for an unknown route or method.
fn unserved(a: &Answer) -> bool {
    matches!(
        a.json["code"].as_str(),
        Some("NOT_FOUND" | "METHOD_NOT_ALLOWED")
    )
}

fn check_answer(doc: &Value, o: &Operation, a: &Answer) {
    let what = format!("{} {} ({})", o.method, o.path, o.id);
    assert!(!unserved(a), "{what} is not served: {a:?}");
    let documented = o.op["responses"]
        .get(a.status.to_string())
        .unwrap_or_else(|| panic!("{what}: status {} is not documented: {a:?}", a.status));
    let documented = resolve(doc, documented);
    match expected_error(&o.id) {
        Some(code) => assert_eq!(a.json["code"], code, "{what}: {a:?}"),
        None => assert!(
            (200..300).contains(&a.status),
            "{what} failed on the fixtures: {a:?}"
        ),
    }
    let content = documented["content"].as_object().expect("response content");
    if a.content_type.starts_with("application/json") {
        let media = content
            .get("application/json")
            .unwrap_or_else(|| panic!("{what}: JSON answer not documented for {}", a.status));
        assert_valid(doc, &media["schema"], &a.json, &format!("answer of {what}"));
    } else {
        assert!(
            content.contains_key("*/*")
                || content.contains_key(a.content_type.split(';').next().unwrap_or("")),
            "{what}: content type {:?} not documented",
            a.content_type
        );
        if a.content_type == "application/vnd.squashfs" {
            assert!(a.bytes.starts_with(b"hsqs"), "{what}: not a squashfs image");
        }
    }
}

/// An error answer: the expected code, with a documented status and the error schema.
fn check_error(doc: &Value, o: &Operation, a: &Answer, code: &str) {
    assert_eq!(a.json["code"], code, "{}: {a:?}", o.id);
    let r = o.op["responses"]
        .get(a.status.to_string())
        .unwrap_or_else(|| panic!("{}: status {} not documented", o.id, a.status));
    let r = resolve(doc, r);
    assert_valid(
        doc,
        &r["content"]["application/json"]["schema"],
        &a.json,
        &format!("{code} of {}", o.id),
    );
}

/// For an operation that can stream: the events are documented ones, their data matches, and
/// the stream ends with `complete`.
fn check_stream(s: &Server, doc: &Value, o: &Operation, path: &str, body: &Body) {
    let Some(media) = o.op["responses"]["200"]["content"].get("text/event-stream") else {
        return;
    };
    let events = media["x-sse-events"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: text/event-stream without x-sse-events", o.id));
    if o.method == "GET" {
        let (status, rx) = s.get_sse(path);
        assert_eq!(status, 200, "{}", o.id);
        let mut names = Vec::new();
        while let Ok((name, data)) = rx.recv_timeout(Duration::from_secs(5)) {
            let schema = events
                .get(&name)
                .unwrap_or_else(|| panic!("{}: undocumented event {name:?}", o.id));
            assert_valid(doc, schema, &data, &format!("{} event {name}", o.id));
            names.push(name);
        }
        assert!(names.contains(&"stdout".to_owned()), "{}: {names:?}", o.id);
        return;
    }
    let Body::Json(body) = body else {
        panic!("{}: a stream needs a JSON body", o.id);
    };
    let (status, got) = s.post_sse(path, body);
    assert_eq!(status, 200, "{}", o.id);
    let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, data, _) in &got {
        let schema = events
            .get(name)
            .unwrap_or_else(|| panic!("{}: undocumented event {name:?} in {names:?}", o.id));
        assert_valid(doc, schema, data, &format!("{} event {name}", o.id));
    }
    assert_eq!(names.last(), Some(&"complete"), "{}: {got:?}", o.id);
    assert!(names.contains(&"stdout"), "{}: {names:?}", o.id);
}

/// An operation that only ever answers with an event stream that does not end by itself (file
/// watching): its 200 answer is `text/event-stream` and nothing else. It cannot be read to its
/// end like the others; see [`open_watch`].
fn is_endless_stream(o: &Operation) -> bool {
    let content = &o.op["responses"]["200"]["content"];
    content.get("text/event-stream").is_some() && content.get("application/json").is_none()
}

/// An endless stream kept open while the other operations run: its events so far.
struct OpenStream<'a> {
    o: &'a Operation,
    rx: Receiver<(String, Value)>,
    seen: Vec<String>,
}

impl OpenStream<'_> {
    /// Waits (20 s at most) for an event `wanted` accepts; every event on the way must be a
    /// documented one with documented data.
    fn wait_for(&mut self, doc: &Value, wanted: impl Fn(&str, &Value) -> bool) -> Value {
        let events = self.o.op["responses"]["200"]["content"]["text/event-stream"]["x-sse-events"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: text/event-stream without x-sse-events", self.o.id));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (name, data) = self.rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "{}: awaited event missing after {:?}: {e}",
                    self.o.id, self.seen
                )
            });
            let schema = events.get(&name).unwrap_or_else(|| {
                panic!(
                    "{}: undocumented event {name:?} after {:?}",
                    self.o.id, self.seen
                )
            });
            assert_valid(doc, schema, &data, &format!("{} event {name}", self.o.id));
            self.seen.push(name.clone());
            if wanted(&name, &data) {
                return data;
            }
        }
    }
}

/// Opens the file watch of the fixture sandbox and drives it: the first event is `watching`; a
/// file written through the API arrives as a change of that file; a whole-workspace restore
/// arrives as `reset`. The stream stays open: deleting the sandbox must end it with `end`.
fn open_watch<'a>(
    s: &Server,
    doc: &Value,
    o: &'a Operation,
    path: &str,
    fx: &Fixtures,
) -> OpenStream<'a> {
    assert_eq!(
        (o.id.as_str(), o.method.as_str()),
        ("watchFiles", "GET"),
        "an endless stream this test does not know how to drive"
    );
    let (status, rx) = s.get_sse(path);
    assert_eq!(status, 200, "{}: {:?}", o.id, rx.try_recv());
    let mut stream = OpenStream {
        o,
        rx,
        seen: Vec::new(),
    };
    let hello = stream.wait_for(doc, |_, _| true);
    assert_eq!(stream.seen, ["watching"], "{}: {hello}", o.id);
    assert_eq!(hello["path"], "/workspace/openapi", "{hello}");
    let a = s.post(
        &format!("/v1/sandboxes/{SANDBOX}/files/write"),
        &json!({ "path": "openapi/watched.txt", "content": "w" }),
    );
    assert_eq!(a.status, 200, "{a:?}");
    stream.wait_for(doc, |_, d| d["path"] == "/workspace/openapi/watched.txt");
    let restore = format!(
        "/v1/sandboxes/{SANDBOX}/snapshots/{}/restore",
        fx.params["snapshotId"]
    );
    let a = s.post(&restore, &json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["restoreMode"], "mount", "{a:?}");
    let reset = stream.wait_for(doc, |n, _| n == "reset");
    assert_eq!(reset["reason"], "workspace restored", "{reset}");
    stream
}

#[test]
fn every_documented_operation_is_served_as_documented() {
    let doc = document();
    let ops = operations(&doc);
    assert!(ops.len() >= 25, "too few operations: {}", ops.len());
    let s = Server::start();
    // Without FUSE (workspaces are plain directories) watching is documented as unsupported.
    let watching = s.mounted();
    let fx = fixtures(&s);
    // Everything but deletions first, in path order; then deletions, innermost first so
    // the sandbox goes last.
    let (mut deletes, others): (Vec<&Operation>, Vec<&Operation>) =
        ops.iter().partition(|o| o.method == "DELETE");
    deletes.sort_by_key(|o| std::cmp::Reverse(o.path.len()));
    let mut streams = Vec::new();
    for o in &others {
        let path = concrete_path(o, &fx);
        if is_endless_stream(o) {
            if watching {
                streams.push(open_watch(&s, &doc, o, &path, &fx));
            } else {
                check_error(&doc, o, &s.get(&path), "UNSUPPORTED");
            }
            continue;
        }
        let body = request_body(&doc, o, &fx);
        let a = send(&s, &o.method, &path, &body);
        check_answer(&doc, o, &a);
        check_stream(&s, &doc, o, &path, &body);
    }
    // Methods the document does not list for a path are not served.
    let mut by_path: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for o in &ops {
        by_path.entry(o.path.as_str()).or_default().push(o);
    }
    for (template, listed) in &by_path {
        let path = concrete_path(listed[0], &fx);
        let bare = path.split('?').next().unwrap_or(&path);
        for m in METHODS {
            if listed.iter().any(|o| o.method == m) {
                continue;
            }
            let a = send(&s, m, &path, &Body::None);
            // A literal path may also be an instance of a sibling template: then that
            // operation answers (`GET /v1/snapshots/import` is `getSnapshot` of a snapshot
            // that cannot exist).
            if let Some(other) = ops
                .iter()
                .find(|o| o.method == m && o.path != *template && matches_template(&o.path, bare))
            {
                assert!(
                    other.op["responses"].get(a.status.to_string()).is_some(),
                    "{m} {template} answers as {} with an undocumented status: {a:?}",
                    other.id
                );
                continue;
            }
            assert!(
                unserved(&a),
                "{m} {template} is served but not documented: {a:?}"
            );
        }
    }
    for o in &deletes {
        let path = concrete_path(o, &fx);
        let a = send(&s, &o.method, &path, &request_body(&doc, o, &fx));
        check_answer(&doc, o, &a);
    }
    assert_eq!(
        s.get(&format!("/v1/sandboxes/{SANDBOX}")).json["code"],
        "SANDBOX_NOT_FOUND"
    );
    // The sandbox is gone: its watch says so and the server closes the stream.
    for mut stream in streams {
        stream.wait_for(&doc, |n, _| n == "end");
        match stream.rx.recv_timeout(Duration::from_secs(20)) {
            Err(RecvTimeoutError::Disconnected) => {}
            other => panic!("{}: the stream goes on after end: {other:?}", stream.o.id),
        }
    }
}

/// A request of the error cases below.
#[derive(Debug)]
enum Req {
    Get,
    Delete,
    Post(Value),
    Put(Value),
    PostBytes(&'static [u8]),
}

#[test]
fn error_answers_match_the_error_schema() {
    let doc = document();
    let ops = operations(&doc);
    let s = Server::start();
    let find = |id: &str| {
        ops.iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("operation {id}"))
    };
    let _ = s.sandbox(SANDBOX);
    assert_eq!(s.put("/v1/volumes/openapi-busy", &json!({})).status, 201);
    let user = s.put(
        "/v1/sandboxes/openapi-user",
        &json!({ "volumes": [{ "name": "openapi-busy", "path": "/data" }] }),
    );
    assert_eq!(user.status, 201, "{user:?}");
    let sb = format!("/v1/sandboxes/{SANDBOX}");
    let cases: Vec<(&str, String, Req, &str)> = vec![
        (
            "getSandbox",
            "/v1/sandboxes/Bad_Id".into(),
            Req::Get,
            "INVALID_SANDBOX_ID",
        ),
        (
            "getSandbox",
            "/v1/sandboxes/nope".into(),
            Req::Get,
            "SANDBOX_NOT_FOUND",
        ),
        (
            "createContext",
            format!("{sb}/contexts"),
            Req::Post(json!({ "language": "cobol" })),
            "UNSUPPORTED_LANGUAGE",
        ),
        (
            "exec",
            format!("{sb}/exec"),
            Req::Post(json!({ "command": "gcc x.c", "runtime": "wasi" })),
            "ROUTE_UNAVAILABLE",
        ),
        (
            "readFile",
            format!("{sb}/files/read"),
            Req::Post(json!({ "path": "missing.txt" })),
            "FILE_NOT_FOUND",
        ),
        (
            "writeFile",
            format!("{sb}/files/write"),
            Req::Post(json!({ "path": "a", "content": "", "bogus": 1 })),
            "INVALID_REQUEST",
        ),
        (
            "putSandbox",
            "/v1/sandboxes/openapi-novol".into(),
            Req::Put(json!({ "volumes": [{ "name": "nope", "path": "/data" }] })),
            "VOLUME_NOT_FOUND",
        ),
        (
            "putSandbox",
            "/v1/sandboxes/openapi-novol".into(),
            Req::Put(json!({ "volumes": [{ "name": "openapi-busy", "path": "/tmp/x" }] })),
            "INVALID_REQUEST",
        ),
        (
            "createSnapshot",
            format!("{sb}/snapshots"),
            Req::Post(json!({ "dir": "/etc" })),
            "PATH_OUTSIDE_WORKSPACE",
        ),
        (
            "createSnapshot",
            format!("{sb}/snapshots"),
            Req::Post(json!({ "dir": "missing" })),
            "FILE_NOT_FOUND",
        ),
        (
            "createSnapshot",
            "/v1/sandboxes/nope/snapshots".into(),
            Req::Post(json!({})),
            "SANDBOX_NOT_FOUND",
        ),
        (
            "getSnapshot",
            "/v1/snapshots/snap-0".into(),
            Req::Get,
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "getSnapshot",
            "/v1/snapshots/not-an-id".into(),
            Req::Get,
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "deleteSnapshot",
            "/v1/snapshots/snap-0".into(),
            Req::Delete,
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "exportSnapshot",
            "/v1/snapshots/snap-0/export".into(),
            Req::Get,
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "restoreSnapshot",
            format!("{sb}/snapshots/snap-0/restore"),
            Req::Post(json!({})),
            "SNAPSHOT_NOT_FOUND",
        ),
        (
            "importSnapshot",
            "/v1/snapshots/import".into(),
            Req::PostBytes(b"not a squashfs image"),
            "SNAPSHOT_CORRUPT",
        ),
        (
            "forkSandbox",
            format!("{sb}/fork"),
            Req::Post(json!({ "ids": [SANDBOX] })),
            "SANDBOX_EXISTS",
        ),
        (
            "forkSandbox",
            format!("{sb}/fork"),
            Req::Post(json!({ "count": 0 })),
            "INVALID_REQUEST",
        ),
        (
            "forkSandbox",
            format!("{sb}/fork"),
            Req::Post(json!({ "ids": ["Bad_Id"] })),
            "INVALID_SANDBOX_ID",
        ),
        (
            "watchFiles",
            format!("{sb}/watch?include=*.py&exclude=*.txt"),
            Req::Get,
            "INVALID_REQUEST",
        ),
        (
            "watchFiles",
            format!("{sb}/watch?path=/etc"),
            Req::Get,
            "PATH_OUTSIDE_WORKSPACE",
        ),
        (
            "watchFiles",
            "/v1/sandboxes/nope/watch".into(),
            Req::Get,
            "SANDBOX_NOT_FOUND",
        ),
        (
            "putVolume",
            "/v1/volumes/Bad_Name".into(),
            Req::Put(json!({})),
            "INVALID_REQUEST",
        ),
        (
            "getVolume",
            "/v1/volumes/nope".into(),
            Req::Get,
            "VOLUME_NOT_FOUND",
        ),
        (
            "deleteVolume",
            "/v1/volumes/openapi-busy".into(),
            Req::Delete,
            "VOLUME_IN_USE",
        ),
    ];
    for (id, path, req, code) in cases {
        let a = match &req {
            Req::Get => s.get(&path),
            Req::Delete => s.delete(&path),
            Req::Post(body) => s.post(&path, body),
            Req::Put(body) => s.put(&path, body),
            Req::PostBytes(body) => s.post_bytes(&path, body),
        };
        check_error(&doc, find(id), &a, code);
    }
    // Nothing was listed by the failed import.
    assert_eq!(s.get("/v1/snapshots").json["count"], 0);
}

/// With plain-directory workspaces (`--fs-mode extract`): health says so, snapshots restore by
/// extracting, forks copy, and watching is `UNSUPPORTED`, all as documented.
#[test]
fn plain_directory_workspaces_answer_as_documented() {
    let doc = document();
    let ops = operations(&doc);
    let find = |id: &str| {
        ops.iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("operation {id}"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), &["--fs-mode", "extract"]);
    let health = s.get("/v1/health");
    check_answer(&doc, find("getHealth"), &health);
    assert_eq!(health.json["workspaces"]["restoreMode"], "extract");
    assert_eq!(health.json["workspaces"]["watch"], false);
    assert!(
        health.json["workspaces"]["reason"].is_string(),
        "{health:?}"
    );
    let sb = s.sandbox(SANDBOX);
    let base = format!("/v1/sandboxes/{sb}");
    let w = s.post(
        &format!("{base}/files/write"),
        &json!({ "path": "src/a.txt", "content": "a" }),
    );
    assert_eq!(w.status, 200, "{w:?}");
    let snap = s.post(&format!("{base}/snapshots"), &json!({ "name": "plain" }));
    check_answer(&doc, find("createSnapshot"), &snap);
    assert_eq!(snap.json["layerCount"], 1, "{snap:?}");
    let id = snap.json["id"].as_str().expect("id");
    let r = s.post(&format!("{base}/snapshots/{id}/restore"), &json!({}));
    check_answer(&doc, find("restoreSnapshot"), &r);
    assert_eq!(r.json["restoreMode"], "extract", "{r:?}");
    let f = s.post(&format!("{base}/fork"), &json!({}));
    check_answer(&doc, find("forkSandbox"), &f);
    assert_eq!(f.json["restoreMode"], "extract", "{f:?}");
    let got = s.get(&base);
    check_answer(&doc, find("getSandbox"), &got);
    assert_eq!(got.json["layerCount"], 0, "{got:?}");
    let watch = s.get(&format!("{base}/watch"));
    check_error(&doc, find("watchFiles"), &watch, "UNSUPPORTED");
}
