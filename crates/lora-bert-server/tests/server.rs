//! The server on the real all-MiniLM-L6-v2 with eight apps, over loopback HTTP: every route
//! answers what the library answers for the same text alone, under concurrent mixed-app load
//! too; bad input gets a JSON error with the right status and leaves the server serving;
//! apps come and go while serving; a full queue answers 503; shutdown answers every accepted
//! request.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lora_bert::Embedder;
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::Runtime;
use lora_bert_server::client::{self, Response};
use lora_bert_server::{Server, ServerConfig, ServerError};
use serde_json::{Value, json};

use common::{SHORT, long_text, make_apps, start};

/// Eight apps (four entity taggers, four classifiers), made once for the whole binary.
fn apps() -> &'static [(String, PathBuf)] {
    static APPS: OnceLock<(tempfile::TempDir, Vec<(String, PathBuf)>)> = OnceLock::new();
    &APPS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let apps = make_apps(dir.path(), 4, 4);
            (dir, apps)
        })
        .1
}

fn post(addr: SocketAddr, path: &str, body: Value) -> Response {
    client::post_json(addr, path, &body).expect("a response")
}

/// Asserts an error answer: its status, a JSON body with `error` and its `error_type`.
fn assert_error(r: &Response, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json().unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_eq!(body["error_type"], kind, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// The entities the library's pipeline gives `text` alone, as the server writes them.
fn ner_alone(runtime: &Arc<Runtime>, app: &str, text: &str) -> Value {
    let ner = NerPipeline::new(
        runtime.clone(),
        app,
        common::tokenizer().with_max_length(128),
    )
    .expect("pipeline");
    let entities = ner.predict(&[text]).expect("entities").remove(0);
    Value::Array(
        entities
            .into_iter()
            .map(|e| {
                json!({"entity_group": e.label, "score": e.score, "word": e.text,
                       "start": e.start, "end": e.end})
            })
            .collect(),
    )
}

/// The label scores the library's pipeline gives `text` alone, best first.
fn predict_alone(runtime: &Arc<Runtime>, app: &str, text: &str) -> Value {
    let clf = ClassifierPipeline::new(
        runtime.clone(),
        app,
        common::tokenizer().with_max_length(128),
    )
    .expect("pipeline");
    let mut scores = clf.predict(&[text]).expect("labels").remove(0).scores;
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    Value::Array(
        scores
            .into_iter()
            .map(|(label, score)| json!({"label": label, "score": score}))
            .collect(),
    )
}

/// Equal JSON, numbers within `tol` (labels, words and offsets exactly).
fn assert_close(got: &Value, want: &Value, tol: f64, what: &str) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}: {got} vs {want}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, tol, &format!("{what}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{what}"
            );
            for (k, x) in a {
                assert_close(x, &b[k], tol, &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

#[test]
fn every_route_answers_what_the_library_answers_for_the_text_alone() {
    let (runtime, server) = start(apps(), ServerConfig::default());
    let addr = server.addr();
    let long = long_text(250);

    // /ner: one text gets its entities; a list gets a list; a long text is windowed.
    let one = post(addr, "/ner", json!({"app": "ner1", "inputs": SHORT[0]}));
    assert_eq!(one.status, 200, "{}", one.text());
    assert_close(
        &one.json().unwrap(),
        &ner_alone(&runtime, "ner1", SHORT[0]),
        1e-5,
        "ner1",
    );
    let many = post(
        addr,
        "/ner",
        json!({"app": "ner2", "inputs": [SHORT[1], long, SHORT[2]]}),
    );
    assert_eq!(many.status, 200, "{}", many.text());
    let many = many.json().unwrap();
    for (i, text) in [SHORT[1], long.as_str(), SHORT[2]].iter().enumerate() {
        assert_close(&many[i], &ner_alone(&runtime, "ner2", text), 1e-5, "ner2");
    }
    let entities = many[1].as_array().unwrap();
    assert!(
        entities
            .last()
            .is_some_and(|e| e["start"].as_u64().unwrap() > 1000),
        "the long text's windows reach its end: {}",
        many[1]
    );

    // /predict: every label, best first.
    let p = post(
        addr,
        "/predict",
        json!({"app": "clf3", "inputs": [SHORT[3], SHORT[4]]}),
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let p = p.json().unwrap();
    for (i, text) in [SHORT[3], SHORT[4]].iter().enumerate() {
        assert_close(&p[i], &predict_alone(&runtime, "clf3", text), 1e-5, "clf3");
    }
    assert_eq!(p[0].as_array().unwrap().len(), 3);

    // /embed: sentence-transformers' embedding (mean pooling, unit length), as the Embedder
    // gives it; through an app's group it differs.
    let device = common::cpu();
    let embedder = Embedder::all_minilm_l6_v2(&device).unwrap();
    let e = post(addr, "/embed", json!({"inputs": SHORT[5]}));
    assert_eq!(e.status, 200, "{}", e.text());
    let e = e.json().unwrap();
    let got: Vec<f64> = e[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = embedder.embed(&[SHORT[5]]).unwrap();
    let want = want.pooled(0);
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert_eq!(got.len(), 384);
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - f64::from(w / norm)).abs() < 1e-5,
            "{g} vs {}",
            w / norm
        );
    }
    let raw = post(
        addr,
        "/embed",
        json!({"inputs": [SHORT[5]], "normalize": false}),
    )
    .json()
    .unwrap();
    assert!((raw[0][0].as_f64().unwrap() - f64::from(want[0])).abs() < 1e-5);
    let tuned = post(addr, "/embed", json!({"inputs": SHORT[5], "app": "ner0"}))
        .json()
        .unwrap();
    let moved: f64 = tuned[0]
        .as_array()
        .unwrap()
        .iter()
        .zip(&got)
        .map(|(a, b)| (a.as_f64().unwrap() - b).abs())
        .sum();
    assert!(moved > 1e-3, "the app's group changes the embedding");

    // /health, /info, /metrics.
    let health = client::get(addr, "/health").unwrap();
    assert_eq!(
        (health.status, health.json().unwrap()["status"].clone()),
        (200, json!("ok"))
    );
    let info = client::get(addr, "/info").unwrap().json().unwrap();
    assert_eq!(info["hidden_size"], 384);
    assert_eq!(info["max_input_length"], 128);
    assert_eq!(info["max_embed_length"], 512);
    assert_eq!(info["apps"].as_array().unwrap().len(), 8);
    let metrics = client::get(addr, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(r#"lora_bert_requests_total{route="/ner",app="ner2",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("lora_bert_batch_rows_count "), "{text}");
    assert!(text.contains("lora_bert_queue_depth 0"), "{text}");
    assert!(
        text.contains(r#"lora_bert_request_duration_seconds_count{route="/predict",app="clf3"} 1"#),
        "{text}"
    );
    server.shutdown().unwrap();
}

#[test]
fn bad_input_gets_a_json_error_and_the_server_keeps_serving() {
    let config = ServerConfig {
        max_texts: 8,
        max_body_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    let (runtime, server) = start(&apps()[..4], config);
    let addr = server.addr();
    let ok = |addr| {
        let r = post(addr, "/ner", json!({"app": "ner0", "inputs": SHORT[0]}));
        assert_eq!(r.status, 200, "{}", r.text());
    };

    let raw = |headers: &[(&str, &str)], body: &[u8]| {
        client::request(addr, "POST", "/predict", headers, body).unwrap()
    };
    assert_error(
        &raw(&[], b"{\"app\": \"clf0\", \"inputs\": "),
        400,
        "bad_request",
    );
    assert_error(
        &raw(
            &[("Content-Type", "text/plain")],
            br#"{"app": "clf0", "inputs": "hi"}"#,
        ),
        415,
        "bad_request",
    );
    assert_error(
        &raw(&[], b"{\"app\": \"clf0\", \"inputs\": \"caf\xff\xfe\"}"),
        400,
        "bad_request",
    );
    assert_error(&raw(&[], br#"{"inputs": "no app"}"#), 422, "validation");
    assert_error(
        &raw(&[], br#"{"app": "clf0", "inputs": 7}"#),
        422,
        "validation",
    );
    assert_error(
        &post(addr, "/predict", json!({"app": "nope", "inputs": "hi"})),
        404,
        "unknown_app",
    );
    assert_error(
        &post(addr, "/predict", json!({"app": "clf0", "inputs": []})),
        422,
        "validation",
    );
    assert_error(
        &post(addr, "/ner", json!({"app": "ner0", "inputs": ["fine", ""]})),
        422,
        "validation",
    );
    assert_error(
        &post(addr, "/ner", json!({"app": "ner0", "inputs": "   "})),
        422,
        "validation",
    );
    assert_error(
        &post(addr, "/ner", json!({"app": "clf0", "inputs": "a text app"})),
        422,
        "validation",
    );
    assert_error(
        &post(
            addr,
            "/predict",
            json!({"app": "ner0", "inputs": "a token app"}),
        ),
        422,
        "validation",
    );
    assert_error(
        &post(addr, "/ner", json!({"app": "ner0", "inputs": vec!["a"; 9]})),
        413,
        "payload_too_large",
    );
    // 100,000 characters: over the per-text limit (20,000 by default), and over the body
    // limit of this server.
    let huge = "word ".repeat(20_000);
    assert_error(
        &post(addr, "/ner", json!({"app": "ner0", "inputs": huge})),
        413,
        "payload_too_large",
    );
    let over = "é".repeat(20_001);
    assert_error(
        &post(addr, "/predict", json!({"app": "clf0", "inputs": over})),
        413,
        "payload_too_large",
    );
    // Not truncating: a text longer than the model takes is refused, not cut.
    let long = long_text(300);
    assert_error(
        &post(
            addr,
            "/predict",
            json!({"app": "clf0", "inputs": long, "truncate": false}),
        ),
        413,
        "payload_too_large",
    );
    assert_error(
        &post(
            addr,
            "/embed",
            json!({"inputs": [SHORT[0], long_text(600)], "truncate": false}),
        ),
        413,
        "payload_too_large",
    );
    let cut = post(addr, "/predict", json!({"app": "clf0", "inputs": long}));
    assert_eq!(cut.status, 200);
    assert_close(
        &cut.json().unwrap(),
        &predict_alone(&runtime, "clf0", &long),
        1e-5,
        "truncated",
    );
    assert_error(&client::get(addr, "/nowhere").unwrap(), 404, "not_found");

    // A client that sends half a body and leaves.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"app\": \"ner0\", \"inp",
        )
        .unwrap();
    }
    // A client that leaves while its request is queued or running.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = json!({"app": "ner0", "inputs": vec![long_text(300); 8]}).to_string();
        write!(
            s,
            "POST /ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(addr);
    let metrics = client::get(addr, "/metrics").unwrap().text();
    for kind in [
        "bad_request",
        "validation",
        "payload_too_large",
        "unknown_app",
        "not_found",
    ] {
        assert!(
            metrics.contains(&format!("lora_bert_errors_total{{kind=\"{kind}\"}}")),
            "{kind}: {metrics}"
        );
    }
    server.shutdown().unwrap();
}

#[test]
fn apps_are_registered_and_removed_while_serving_behind_a_token() {
    let config = ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    };
    let (runtime, server) = start(&apps()[..2], config);
    let addr = server.addr();
    let auth = [("Authorization", "Bearer s3cret")];
    let register = |body: Value, headers: &[(&str, &str)]| {
        client::request(addr, "POST", "/apps", headers, body.to_string().as_bytes()).unwrap()
    };

    assert_error(&client::get(addr, "/apps").unwrap(), 401, "unauthorized");
    assert_error(
        &client::request(
            addr,
            "GET",
            "/apps",
            &[("Authorization", "Bearer s3cre")],
            b"",
        )
        .unwrap(),
        401,
        "unauthorized",
    );
    let listed = client::request(addr, "GET", "/apps", &auth, b"").unwrap();
    assert_eq!(listed.status, 200);
    let listed = listed.json().unwrap();
    assert_eq!(listed["apps"].as_array().unwrap().len(), 2);
    assert!(listed["backbone_bytes"].as_u64().unwrap() > 80_000_000);

    let (name, dir) = &apps()[5];
    let body = json!({"name": "fresh", "dir": dir});
    assert_error(&register(body.clone(), &[]), 401, "unauthorized");
    let created = register(body.clone(), &auth);
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json().unwrap();
    assert_eq!(created["route"], "/predict", "{name} is a classifier");
    let bytes = created["bytes"].as_u64().unwrap();
    assert!(bytes > 0 && bytes < 2_000_000, "{bytes}");
    assert_error(&register(body, &auth), 409, "conflict");

    // A directory that fails to load is refused; the others keep serving.
    let broken = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.path().join(entry.file_name())).unwrap();
    }
    let adapter = broken.path().join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&adapter).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&adapter, bytes).unwrap();
    assert_error(
        &register(json!({"name": "broken", "dir": broken.path()}), &auth),
        422,
        "app_load",
    );
    assert_error(
        &register(json!({"name": "nowhere", "dir": "/no/such/dir"}), &auth),
        422,
        "app_load",
    );
    assert_error(
        &register(json!({"name": "", "dir": dir}), &auth),
        422,
        "validation",
    );
    let r = post(
        addr,
        "/predict",
        json!({"app": "fresh", "inputs": SHORT[2]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_close(
        &r.json().unwrap(),
        &predict_alone(&runtime, "fresh", SHORT[2]),
        1e-5,
        "fresh",
    );

    let gone = client::request(addr, "DELETE", "/apps/fresh", &auth, b"").unwrap();
    assert_eq!(gone.status, 200, "{}", gone.text());
    assert_error(
        &client::request(addr, "DELETE", "/apps/fresh", &auth, b"").unwrap(),
        404,
        "unknown_app",
    );
    assert_error(
        &post(
            addr,
            "/predict",
            json!({"app": "fresh", "inputs": SHORT[2]}),
        ),
        404,
        "unknown_app",
    );
    assert_eq!(
        post(addr, "/ner", json!({"app": "ner0", "inputs": SHORT[2]})).status,
        200
    );
    server.shutdown().unwrap();

    // Management on a non-loopback address needs a token.
    let device = common::cpu();
    let runtime = Arc::new(Runtime::load(common::minilm().dir, &device).unwrap());
    let server = Server::new(runtime, common::tokenizer(), ServerConfig::default(), "m").unwrap();
    match server.spawn("0.0.0.0:0".parse().unwrap()) {
        Err(ServerError::Config(message)) => assert!(message.contains("token"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The load test: clients send requests of random apps and texts at once; every answer is
/// the answer of its text alone.
#[test]
fn concurrent_mixed_app_requests_each_get_their_own_answers() {
    let (runtime, server) = start(apps(), ServerConfig::default());
    let addr = server.addr();
    let texts: Vec<String> = SHORT
        .iter()
        .map(|s| (*s).to_owned())
        .chain([long_text(120), long_text(200)])
        .collect();
    // The answers of each text alone, from the library.
    let mut alone = std::collections::BTreeMap::new();
    for (app, _) in apps() {
        for text in &texts {
            let want = if app.starts_with("ner") {
                ner_alone(&runtime, app, text)
            } else {
                predict_alone(&runtime, app, text)
            };
            alone.insert((app.clone(), text.clone()), want);
        }
    }
    let alone = Arc::new(alone);
    let texts = Arc::new(texts);
    let clients: u64 = 16;
    let per_client: u64 = 16;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (alone, texts) = (alone.clone(), texts.clone());
            std::thread::spawn(move || {
                let mut state = c.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = |n: usize| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % n as u64) as usize
                };
                for _ in 0..per_client {
                    let (app, _) = &apps()[next(8)];
                    let picked: Vec<String> = (0..1 + next(3))
                        .map(|_| texts[next(texts.len())].clone())
                        .collect();
                    let route = if app.starts_with("ner") {
                        "/ner"
                    } else {
                        "/predict"
                    };
                    let r = post(addr, route, json!({"app": app, "inputs": picked}));
                    assert_eq!(r.status, 200, "{}", r.text());
                    let got = r.json().unwrap();
                    for (i, text) in picked.iter().enumerate() {
                        let want = &alone[&(app.clone(), text.clone())];
                        assert_close(&got[i], want, 1e-5, &format!("{app} on {text:.30}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client thread");
    }
    let metrics = client::get(addr, "/metrics").unwrap().text();
    let batches: f64 = metric(&metrics, "lora_bert_batch_rows_count");
    let rows: f64 = metric(&metrics, "lora_bert_batch_rows_sum");
    assert!(
        rows / batches > 1.5,
        "requests share batches: {rows} rows in {batches} passes"
    );
    server.shutdown().unwrap();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[test]
fn a_full_queue_answers_503_and_shutdown_answers_every_accepted_request() {
    let config = ServerConfig {
        max_queue: 2,
        max_batch_tokens: 512,
        ..ServerConfig::default()
    };
    let (_runtime, server) = start(&apps()[..2], config);
    let addr = server.addr();
    let long = Arc::new(long_text(300));
    let go = Arc::new(std::sync::Barrier::new(25));
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let (long, go) = (long.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                let inputs = vec![long.as_str(); 4];
                client::post_json(addr, "/ner", &json!({"app": "ner0", "inputs": inputs}))
            })
        })
        .collect();
    go.wait();
    std::thread::sleep(Duration::from_millis(300));
    // Shut down while requests are queued and running.
    server.shutdown().unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for h in handles {
        match h.join().unwrap() {
            Ok(r) => {
                if r.status == 503 {
                    let kind = r.json().unwrap()["error_type"].clone();
                    assert!(kind == "overloaded" || kind == "shutting_down", "{kind}");
                    if kind == "overloaded" {
                        assert_eq!(r.header("retry-after"), Some("1"));
                    }
                } else {
                    assert_eq!(r.status, 200, "{}", r.text());
                }
                *counts.entry(r.status).or_insert(0) += 1;
            }
            // Not accepted: the listener was closed before this client connected.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                *counts.entry(0).or_insert(0) += 1;
            }
            Err(e) => panic!("an accepted request lost its answer: {e}"),
        }
    }
    assert!(counts.get(&503).is_some_and(|&n| n > 0), "{counts:?}");
    assert!(counts.get(&200).is_some_and(|&n| n > 0), "{counts:?}");
}
