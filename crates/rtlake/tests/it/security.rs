//! Secrets stay secret: the Seoul API key shows nowhere a user or an attacker could look after a
//! whole run (logs, errors, metrics, pages, APIs, Kafka, the lake), and `rtlake serve` guards
//! every `/api/` route with a token and refuses to listen beyond loopback without one.

use crate::common;

use common::{Guard, OutputWithin, Succeeds, TestEnv, rtlake, signal};
use rtlake_bikes::fake_api::FakeApi;
use std::process::{Command, Stdio};

/// A key no other text contains; `flaky` makes the fake API fail its first two calls, so the
/// producer's error and retry paths run with it too.
const KEY: &str = "flakyK3YNEVERSHOWNc0ffee";
/// A SASL password and an S3 secret given to the processor in its config file.
const SASL_PASSWORD: &str = "saslPW0RDNEVERSHOWNbeef";
const S3_SECRET: &str = "s3SECRETNEVERSHOWNcafe";

/// Where `needle` occurs in `haystack`, with some context, or nothing.
fn find(haystack: &[u8], needle: &str) -> Option<String> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?;
    let from = at.saturating_sub(120);
    let to = (at + needle.len() + 120).min(haystack.len());
    Some(String::from_utf8_lossy(&haystack[from..to]).into_owned())
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut r = client.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_shows_in_logs_errors_metrics_pages_kafka_or_the_lake() {
    let env = TestEnv::new("keyleak").await;
    let api = FakeApi::start().await.unwrap();
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();

    // The producer, as documented: the key in SEOUL_API_KEY, every log at debug level.
    let mport = common::free_port();
    let log = env.dir.path().join("produce.log");
    let mut produce = rtlake();
    produce
        .env("SEOUL_API_KEY", KEY)
        .env("RTLAKE_LOG", "debug")
        .args([
            "produce",
            "bikes",
            "--source",
            "seoul-api",
            "--interval",
            "1s",
        ])
        .args(["--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--api-base", &api.base])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .stdout(std::fs::File::create(env.dir.path().join("produce.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut produce = Guard::spawn(produce);
    common::wait_for("two polls published", 120, async || {
        env.cluster()
            .watermarks(&env.topic)
            .await
            .map(|w| w.iter().map(|(_, lo, hi)| hi - lo).sum::<i64>() >= 2 * 2721)
            .unwrap_or(false)
    })
    .await;
    let client = reqwest::Client::new();
    let (status, body) = get(&client, &format!("http://127.0.0.1:{mport}/metrics"), None).await;
    assert_eq!(status, 200);
    seen.push(("the producer's /metrics".into(), body));
    signal(produce.0.id(), "-TERM");
    assert!(
        produce.wait_within(60).success(),
        "the producer stops cleanly"
    );
    let produced = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&produced).contains("500"),
        "the producer logged the API's failures: {}",
        String::from_utf8_lossy(&produced)
    );
    seen.push(("the producer's log".into(), produced));
    seen.push((
        "the producer's output".into(),
        std::fs::read(env.dir.path().join("produce.out")).unwrap(),
    ));
    assert!(
        api.calls() >= 8,
        "two failed calls and two polls of three pages"
    );

    // A key the API refuses: the error a user sees.
    let out = rtlake()
        .env("SEOUL_API_KEY", format!("bad{KEY}"))
        .args(["produce", "bikes", "--source", "seoul-api"])
        .args(["--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--api-base", &api.base])
        .output_within(120)
        .unwrap();
    assert!(!out.status.success());
    seen.push(("a failing producer's stderr".into(), out.stderr));

    // The processor, at debug level, into the lake, with a SASL password (the broker does not
    // use it on a plaintext listener) and an S3 secret (a local lake does not use it) in its
    // config file.
    let config = env.dir.path().join("secrets.toml");
    std::fs::write(
        &config,
        format!("[kafka.options]\n\"sasl.password\" = \"{SASL_PASSWORD}\"\n[lake.storage-options]\naws_secret_access_key = \"{S3_SECRET}\"\n"),
    )
    .unwrap();
    let out = env
        .run_cmd(&["--trigger", "available-now"])
        .arg("--config")
        .arg(&config)
        .env("RTLAKE_LOG", "debug")
        .succeeds_within(300);
    seen.push(("the processor's log".into(), out.stderr));

    // The server: every page and API.
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = rtlake();
    serve
        .args(["serve", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--lake"])
        .arg(env.lake())
        .stderr(Stdio::null());
    let _serve = Guard::spawn(serve);
    common::wait_for("rtlake serve", 30, async || {
        client
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .is_ok()
    })
    .await;
    // The live view fills from Kafka: wait until it holds every station.
    common::wait_for("the live view", 60, async || {
        let (_, b) = get(&client, &format!("{base}/api/stations"), None).await;
        serde_json::from_slice::<serde_json::Value>(&b)
            .is_ok_and(|v| v["stations"].as_array().is_some_and(|s| s.len() == 2721))
    })
    .await;
    for path in [
        "/",
        "/pipeline",
        "/kafka",
        "/assets/common.js",
        "/api/stations",
        "/api/pipeline",
        "/api/kafka",
        &format!("/api/kafka/topics/{}/messages?limit=100", env.topic),
        "/metrics",
    ] {
        let (status, body) = get(&client, &format!("{base}{path}"), None).await;
        assert_eq!(status, 200, "{path}");
        seen.push((format!("GET {path}"), body));
    }

    // Every row of every table, as text (Parquet pages are compressed: read them, not grep).
    let lake = rtlake_lake::Lake::open(&env.lake_config()).unwrap();
    let sql = rtlake_query::LakeSql::open(&lake).await.unwrap();
    assert!(sql.tables().len() >= 4, "{:?}", sql.tables());
    for t in sql.tables() {
        let (schema, batches) = sql.query(&format!("SELECT * FROM {t}")).await.unwrap();
        let mut text = Vec::new();
        rtlake_query::write(&mut text, &schema, &batches, rtlake_query::Format::Csv).unwrap();
        seen.push((format!("table {t}"), text));
    }
    for f in files_under(&env.lake()) {
        seen.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    // And the topic itself, every message.
    let (status, body) = get(
        &client,
        &format!("{base}/api/kafka/topics/{}/messages?limit=100", env.topic),
        None,
    )
    .await;
    assert_eq!(status, 200);
    seen.push(("the topic's messages".into(), body));

    // The check can fail: the key is there when it is there.
    assert!(find(format!("x{KEY}x").as_bytes(), KEY).is_some());
    let leaks: Vec<String> = seen
        .iter()
        .flat_map(|(what, bytes)| {
            [KEY, SASL_PASSWORD, S3_SECRET]
                .into_iter()
                .filter_map(move |k| find(bytes, k).map(|ctx| format!("{what}: …{ctx}…")))
        })
        .collect();
    assert!(leaks.is_empty(), "a secret shows in:\n{}", leaks.join("\n"));
    assert!(seen.len() > 20, "looked in {} places", seen.len());
}

fn serve_cmd(env: &TestEnv, listen: &str, token: Option<&str>) -> Command {
    let mut c = rtlake();
    c.env_remove("RTLAKE_SERVE_AUTH_TOKEN")
        .args(["serve", "--brokers", &env.brokers, "--topic", &env.topic])
        .args(["--listen", listen, "--lake"])
        .arg(env.lake());
    if let Some(t) = token {
        c.env("RTLAKE_SERVE_AUTH_TOKEN", t);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_beyond_loopback_needs_a_token_and_every_api_route_checks_it() {
    let env = TestEnv::new("token").await;
    const TOKEN: &str = "s3cret-t0ken-0123456789abcdef";

    // Beyond loopback without a token: refused before anything listens.
    let port = common::free_port();
    let out = serve_cmd(&env, &format!("0.0.0.0:{port}"), None)
        .output_within(60)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("RTLAKE_SERVE_AUTH_TOKEN") && err.contains(&format!("0.0.0.0:{port}")),
        "{err}"
    );
    // A token too short to guard anything is refused, and not shown.
    let out = serve_cmd(&env, "127.0.0.1:0", Some("short"))
        .output_within(60)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("serve.auth-token") && err.contains("16"),
        "{err}"
    );
    assert!(!err.contains("short"), "the token is shown: {err}");

    // With a token (on loopback here: tests use loopback only), every /api/ route wants it.
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = Guard::spawn(serve_cmd(&env, &format!("127.0.0.1:{port}"), Some(TOKEN)));
    let client = reqwest::Client::new();
    common::wait_for("rtlake serve", 30, async || {
        client.get(format!("{base}/")).send().await.is_ok()
    })
    .await;
    let routes = [
        "/api/openapi.json",
        "/api/districts",
        "/api/stations",
        "/api/pipeline",
        "/api/kafka",
        &format!("/api/kafka/topics/{}/messages", env.topic),
    ];
    for path in routes {
        let url = format!("{base}{path}");
        let (status, body) = get(&client, &url, None).await;
        assert_eq!(status, 401, "{path} without a token");
        assert!(
            String::from_utf8_lossy(&body).contains("Bearer"),
            "{path}: the refusal says what to send"
        );
        let (status, body) = get(&client, &url, Some("s3cret-t0ken-0123456789abcdeX")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
        let (status, _) = get(&client, &url, Some(TOKEN)).await;
        assert_ne!(status, 401, "{path} with the token");
    }
    let (status, _) = get(&client, &format!("{base}/api/openapi.json"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    let sql = |token: Option<&'static str>| {
        let mut r = client
            .post(format!("{base}/api/sql"))
            .json(&serde_json::json!({ "sql": "SELECT 1 AS one" }));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(sql(None).await.unwrap().status(), 401);
    assert_eq!(sql(Some(TOKEN)).await.unwrap().status(), 200);
    // EventSource cannot send headers: the live stream takes the token in the query.
    let r = client
        .get(format!("{base}/api/live?access_token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    drop(r);
    let (status, _) = get(&client, &format!("{base}/api/live?access_token=nope"), None).await;
    assert_eq!(status, 401);
    // Elsewhere a token in the URL is not taken (it would end up in logs and histories).
    let (status, _) = get(
        &client,
        &format!("{base}/api/stations?access_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(status, 401, "?access_token= on another route");
    // The pages and /metrics hold no lake data and stay open (the pages send the token).
    for path in ["/", "/pipeline", "/assets/common.js", "/metrics"] {
        let (status, _) = get(&client, &format!("{base}{path}"), None).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn the_broker_refuses_to_listen_beyond_loopback_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("0.0.0.0:{}", common::free_port());
    let out = rtlake()
        .args(["broker", "--listen", &listen, "--data"])
        .arg(dir.path())
        .output_within(30)
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&listen)
            && err.contains("--allow-remote")
            && err.contains("no authentication"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_requests_naming_this_server_are_served() {
    let env = TestEnv::new("host").await;
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = Guard::spawn(serve_cmd(&env, &format!("127.0.0.1:{port}"), None));
    let client = reqwest::Client::new();
    common::wait_for("rtlake serve", 30, async || {
        client.get(format!("{base}/")).send().await.is_ok()
    })
    .await;
    let sql = |host: &str, origin: Option<&str>| {
        let mut r = client
            .post(format!("{base}/api/sql"))
            .header("Host", host)
            .json(&serde_json::json!({ "sql": "SELECT 1 AS one" }));
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let here = format!("127.0.0.1:{port}");
    let local = format!("localhost:{port}");
    assert_eq!(sql(&here, None).await.unwrap().status(), 200);
    assert_eq!(
        sql(&local, Some(&format!("http://{local}")))
            .await
            .unwrap()
            .status(),
        200
    );
    // A rebound name: the browser sends the attacker's host name.
    let rebound = format!("rebind.example:{port}");
    let r = sql(&rebound, None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("rebind.example"));
    let r = client
        .get(format!("{base}/api/stations"))
        .header("Host", &rebound)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "GET with another Host");
    // A page elsewhere posting to this server.
    let r = sql(&here, Some("http://rebind.example")).await.unwrap();
    assert_eq!(r.status(), 403, "POST from another Origin");
    let r = sql(&here, Some("null")).await.unwrap();
    assert_eq!(r.status(), 403, "POST from an opaque Origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_takes_at_most_its_clients_and_frees_a_place_when_one_leaves() {
    let env = TestEnv::new("live-cap").await;
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut c = serve_cmd(&env, &format!("127.0.0.1:{port}"), None);
    c.env("RTLAKE_SERVE_LIVE_MAX_CLIENTS", "2");
    let _serve = Guard::spawn(c);
    let client = reqwest::Client::new();
    common::wait_for("rtlake serve", 30, async || {
        client.get(format!("{base}/")).send().await.is_ok()
    })
    .await;
    let open = || client.get(format!("{base}/api/live")).send();
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = open().await.unwrap();
    assert_eq!(c.status(), 503);
    assert!(c.text().await.unwrap().contains("serve.live-max-clients"));
    drop(a);
    common::wait_for("a freed place", 10, async || {
        open().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    drop(b);
}
