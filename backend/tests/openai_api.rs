//! The OpenAI-compatible API and the serving machinery end to end: routes and
//! their errors, the remote engine against a second instance of our own server,
//! the bounded queue (429 with `Retry-After`), cancellation when a client goes
//! away, API keys, `/metrics` and the generated API description.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{Server, agent, get, get_with_key, need_default_model, post, post_sse};
use serde_json::{Value, json};

fn chat(model: &str, content: &str) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 12,
        "temperature": 0,
    })
}

#[test]
fn routes_answer_in_openais_shapes() {
    let server = Server::tiny(&[]);
    let models = get(&server.url("/v1/models")).json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "llama-tiny");
    assert_eq!(models["data"][0]["owned_by"], "teacherlm");

    let r = post(
        &server.url("/v1/chat/completions"),
        &chat("llama-tiny", "Hello"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    assert_eq!(c["usage"]["completion_tokens"], 12);
    let text = c["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    // The stream says the same, chunk by chunk, then [DONE].
    let mut streamed = chat("llama-tiny", "Hello");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, data) = post_sse(&server.url("/v1/chat/completions"), &streamed);
    assert_eq!(status, 200);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, text);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 12);

    // Completions: n choices with stop strings and usage.
    let r = post(
        &server.url("/v1/completions"),
        &json!({"model": "llama-tiny", "prompt": "The quick brown", "max_tokens": 8,
                "n": 3, "temperature": 1.0, "seed": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["object"], "text_completion");
    assert_eq!(c["choices"].as_array().unwrap().len(), 3);
    // Each choice stops at its budget or at the end-of-sequence token.
    let used = c["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((3..=24).contains(&used), "{used}");
    let texts: Vec<&str> = (0..3)
        .map(|i| c["choices"][i]["text"].as_str().unwrap())
        .collect();
    assert!(texts[0] != texts[1] || texts[1] != texts[2], "{texts:?}");
}

#[test]
fn bad_requests_get_openai_errors_naming_the_param() {
    let server = Server::tiny(&[]);
    let url = server.url("/v1/chat/completions");
    let with = |key: &str, value: Value| {
        let mut body = chat("llama-tiny", "Hi");
        body[key] = value;
        body
    };
    let cases = [
        (chat("nope", "Hi"), "model", Some("model_not_found")),
        (with("messages", json!([])), "messages", None),
        (
            with("messages", json!([{"role": "wizard", "content": "x"}])),
            "messages[0].role",
            None,
        ),
        (with("temperature", json!(5)), "temperature", None),
        (with("top_p", json!(0)), "top_p", None),
        (with("n", json!(99)), "n", None),
        (with("max_tokens", json!(0)), "max_tokens", None),
        (with("max_tokens", json!(100_000)), "max_tokens", None),
        (with("stop", json!(["a", "b", "c", "d", "e"])), "stop", None),
        (
            with(
                "messages",
                json!([{"role": "user", "content": "hi ".repeat(400)}]),
            ),
            "prompt",
            None,
        ),
    ];
    for (body, param, code) in cases {
        let r = post(&url, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["param"], param, "{}", r.body);
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"].as_str(), code);
    }
    let r = post(
        &server.url("/v1/completions"),
        &json!({"model": "llama-tiny", "prompt": ""}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (422, Some("prompt"))
    );
    let r = common::post_raw(&url, vec![b' '; 2 << 20]);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[test]
fn the_remote_engine_relays_a_second_server() {
    // The origin requires a key; the relay reads it from the variable its
    // config names.
    let origin = Server::tiny(&["--api-key", "origin-secret"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("teacherlm.toml");
    std::fs::write(
        &config,
        format!(
            "[[remote]]\nname = \"relay\"\nbase_url = \"{0}\"\nmodel = \"llama-tiny\"\n\
             api_key_env = \"RELAY_KEY\"\n\n\
             [[remote]]\nname = \"broken\"\nbase_url = \"{0}\"\nmodel = \"ghost\"\n\
             api_key_env = \"RELAY_KEY\"\n",
            origin.url("/v1")
        ),
    )
    .unwrap();
    let relay = Server::spawn_with_env(
        &["--config", config.to_str().unwrap()],
        &[("RELAY_KEY", "origin-secret")],
    );
    let models = get(&relay.url("/v1/models")).json();
    assert_eq!(models["data"][0]["id"], "relay");
    assert_eq!(models["data"][0]["owned_by"], "remote");

    let direct = get_with_key_post(&origin, &chat("llama-tiny", "Hello"));
    let relayed = post(&relay.url("/v1/chat/completions"), &chat("relay", "Hello"));
    assert_eq!(relayed.status, 200, "{}", relayed.body);
    assert_eq!(
        relayed.json()["choices"][0]["message"]["content"],
        direct["choices"][0]["message"]["content"]
    );
    assert_eq!(relayed.json()["usage"]["completion_tokens"], 12);
    // Annotation through the remote teacher, streamed.
    let (status, data) = post_sse(
        &relay.url("/api/annotate"),
        &json!({"question": "2+2?", "options": ["3", "4"], "answer": "B", "max_tokens": 8,
                "kinds": ["cot"], "seed": 1}),
    );
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["type"], "record", "{data:?}");
    assert_eq!(last["response"]["annotations"][0]["model"], "relay");
    // A remote error comes back as a gateway error naming the remote's reason.
    let r = post(&relay.url("/v1/chat/completions"), &chat("broken", "Hello"));
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("ghost"), "{}", r.body);
    // Without the key variable the relay refuses to start, naming it.
    let out = common::bin()
        .args(["serve", "--port", "0", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RELAY_KEY"));
}

/// POST a chat to `server` with its key; the JSON answer.
fn get_with_key_post(server: &Server, body: &Value) -> Value {
    let r = agent()
        .post(&server.url("/v1/chat/completions"))
        .header("Authorization", "Bearer origin-secret")
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap()
}

#[test]
fn api_keys_guard_every_non_public_route() {
    let server = Server::tiny(&["--api-key", "k1", "--api-key", "k2"]);
    assert_eq!(get(&server.url("/health")).status, 200);
    assert_eq!(get(&server.url("/api/openapi.json")).status, 200);
    let r = get(&server.url("/v1/models"));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(get(&server.url("/metrics")).status, 401);
    let r = post(&server.url("/api/annotate"), &json!({}));
    assert_eq!(
        (r.status, r.json()["error_type"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(get_with_key(&server.url("/v1/models"), "k2").status, 200);
    assert_eq!(get_with_key(&server.url("/v1/models"), "k3").status, 401);
}

#[test]
fn metrics_and_the_api_description_are_served() {
    let server = Server::tiny(&[]);
    post(
        &server.url("/v1/chat/completions"),
        &chat("llama-tiny", "Hi"),
    );
    let m = get(&server.url("/metrics"));
    assert!(
        m.content_type.starts_with("text/plain"),
        "{}",
        m.content_type
    );
    for needle in [
        "teacherlm_http_requests_total{route=\"/v1/chat/completions\",method=\"POST\",status=\"200\"} 1",
        "teacherlm_generated_tokens_total{model=\"llama-tiny\"} 12",
        "teacherlm_queue_depth{model=\"llama-tiny\"} 0",
        "teacherlm_time_to_first_token_seconds_count{model=\"llama-tiny\"} 1",
    ] {
        assert!(m.body.contains(needle), "missing `{needle}` in\n{}", m.body);
    }
    // One latency per streamed piece after the first (a piece may hold several
    // tokens while UTF-8 or a stop string is incomplete).
    let latencies: u64 = m
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix("teacherlm_token_latency_seconds_count{model=\"llama-tiny\"} ")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=11).contains(&latencies), "{latencies}");
    let api = get(&server.url("/api/openapi.json")).json();
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/annotate",
        "/api/samples",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/metrics",
        "/health",
    ] {
        assert!(api["paths"][path].is_object(), "{path} missing");
    }
    for schema in [
        "AnnotateRequest",
        "AnnotateResponse",
        "AnnotationRecord",
        "ChatRequest",
        "ErrorBody",
    ] {
        assert!(
            api["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let docs = get(&server.url("/api/docs"));
    assert!(docs.body.contains("/api/annotate") && docs.body.contains("AnnotateRequest"));
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_leaves_stops_its_generation() {
    need_default_model();
    let server = Server::spawn(&["--max-batch", "1", "--queue-size", "1"]);
    // Greedy counting never ends on its own: these run to their budget.
    let long = |seed: u64| {
        json!({"model": "smollm2-135m-instruct", "max_tokens": 150, "temperature": 0,
               "seed": seed, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,"})
    };
    // One running, one waiting: of four at once, at least two are refused.
    let url = server.url("/v1/completions");
    let answers: Vec<common::Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let url = url.clone();
                let body = long(i);
                s.spawn(move || post(&url, &body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<&common::Reply> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(
        refused.len() >= 2,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|r| r.status == 200 || r.status == 429));
    for r in &refused {
        assert_eq!(r.retry_after.as_deref(), Some("1"));
        assert_eq!(r.json()["error"]["type"], "rate_limit_exceeded");
    }
    for r in answers.iter().filter(|r| r.status == 200) {
        assert_eq!(r.json()["usage"]["completion_tokens"], 150, "{}", r.body);
    }
    // The queue drained: a new request is served.
    let r = post(
        &server.url("/v1/chat/completions"),
        &chat("smollm2-135m-instruct", "Hi"),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // A streaming client that disconnects after a few chunks.
    let mut body = long(9);
    body["max_tokens"] = json!(2000);
    body["stream"] = json!(true);
    let before = tokens_generated(&server);
    {
        let r = agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let mut lines = BufReader::new(r.into_body().into_reader()).lines();
        for _ in 0..6 {
            lines.next().unwrap().unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = get(&server.url("/metrics")).body;
        if m.contains("teacherlm_running_sequences{model=\"smollm2-135m-instruct\"} 0") {
            break;
        }
        assert!(Instant::now() < deadline, "generation still running:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let spent = tokens_generated(&server) - before;
    assert!(
        spent < 500,
        "{spent} tokens generated for a client that left"
    );
    let m = get(&server.url("/metrics")).body;
    assert!(
        m.contains("teacherlm_cancelled_total{model=\"smollm2-135m-instruct\"} 1"),
        "{m}"
    );
}

fn tokens_generated(server: &Server) -> u64 {
    let m = get(&server.url("/metrics")).body;
    m.lines()
        .find(|l| {
            l.starts_with("teacherlm_generated_tokens_total{model=\"smollm2-135m-instruct\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}
