#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use betanet_app::{
    App, AppConfig, AppError, Method, NodeStats, Plugin, PluginRegistry, Request, Response,
};
use bytes::Bytes;
use common::{call, call_h, hdr, start};

fn site_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("static/css")).unwrap();
    std::fs::write(d.path().join("static/css/site.css"), "body{color:red}").unwrap();
    std::fs::write(d.path().join("static/index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(d.path().join("static/.env"), "hidden").unwrap();
    std::fs::write(d.path().join("secret.txt"), "top secret").unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    std::fs::write(d.path().join("static/data.bin"), data).unwrap();
    std::fs::create_dir_all(d.path().join("templates")).unwrap();
    std::fs::write(
        d.path().join("templates/page.html"),
        "<p>{{ name }}</p><div>{{ raw | safe }}</div>",
    )
    .unwrap();
    d
}

#[tokio::test]
async fn static_files_validators_ranges_and_traversal() {
    let d = site_dir();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        d.path().join("secret.txt"),
        d.path().join("static/link.txt"),
    )
    .unwrap();
    let mut app = App::new();
    app.add_static("/static", d.path().join("static")).unwrap();
    let (addr, _) = start(app).await;

    let r = call(addr, Method::Get, "/static/css/site.css", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body{color:red}");
    assert_eq!(hdr(&r, "content-type"), Some("text/css; charset=utf-8"));
    let etag = hdr(&r, "etag").unwrap().to_owned();
    let lm = hdr(&r, "last-modified").unwrap().to_owned();
    assert!(etag.starts_with('"'));

    let r = call_h(addr, "/static/css/site.css", &[("if-none-match", &etag)]).await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(hdr(&r, "etag"), Some(etag.as_str()));
    let r = call_h(
        addr,
        "/static/css/site.css",
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call_h(addr, "/static/css/site.css", &[("if-modified-since", &lm)]).await;
    assert_eq!(r.status, 304);

    let r = call_h(addr, "/static/data.bin", &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, (10u8..20).collect::<Vec<u8>>());
    assert_eq!(hdr(&r, "content-range"), Some("bytes 10-19/1000"));
    assert_eq!(hdr(&r, "content-length"), Some("10"));
    let r = call_h(addr, "/static/data.bin", &[("range", "bytes=-4")]).await;
    assert_eq!(r.body, vec![(996 % 256) as u8, 229, 230, 231]);
    let r = call_h(addr, "/static/data.bin", &[("range", "bytes=5000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(hdr(&r, "content-range"), Some("bytes */1000"));
    let r = call_h(
        addr,
        "/static/data.bin",
        &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 1000));

    // Directory index.
    let r = call(addr, Method::Get, "/static/", b"").await;
    assert_eq!(r.body, b"<h1>home</h1>");

    // Traversal in every spelling is refused and never returns the secret.
    for uri in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/css/..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/.env",
        "/static/missing.txt",
    ] {
        let r = call(addr, Method::Get, uri, b"").await;
        assert!(r.status == 400 || r.status == 404, "{uri}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{uri}"
        );
    }
    #[cfg(unix)]
    {
        let r = call(addr, Method::Get, "/static/link.txt", b"").await;
        assert_eq!(r.status, 404, "symlink escaping the root");
    }
}

#[tokio::test]
async fn templates_escape_and_reload_without_restart() {
    let d = site_dir();
    let mut app = App::new();
    app.add_template_root(d.path().join("templates"));
    app.get("/page", |r: Request| async move {
        r.render(
            "page.html",
            serde_json::json!({"name": "<script>x</script>", "raw": "<b>bold</b>"}),
        )
    })
    .unwrap();
    let (addr, _) = start(app).await;
    let r = call(addr, Method::Get, "/page", b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "<p>&lt;script&gt;x&lt;&#x2f;script&gt;</p><div><b>bold</b></div>"
    );

    let p = d.path().join("templates/page.html");
    std::fs::write(&p, "<i>edited {{ name }}</i>").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    drop(f);
    let r = call(addr, Method::Get, "/page", b"").await;
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "<i>edited &lt;script&gt;x&lt;&#x2f;script&gt;</i>"
    );
}

#[derive(Clone)]
struct Hello;

impl Plugin for Hello {
    fn name(&self) -> &str {
        "hello"
    }
    fn register(&self, app: &mut App) -> Result<(), AppError> {
        app.get("/hello/{name}", |r: Request| async move {
            format!("hello {}", r.param("name").unwrap_or("world"))
        })?;
        Ok(())
    }
}

#[tokio::test]
async fn plugin_selection_metrics_and_dashboard() {
    let mut reg = PluginRegistry::with_builtins();
    reg.register_plugin(Hello);
    assert_eq!(
        reg.names(),
        vec!["dashboard", "hello", "metrics", "proxy", "static"]
    );
    let stats = Arc::new(NodeStats::new());

    // Unknown plugin: the error names the key and the known names.
    let bad = AppConfig::from_toml_str("plugins = [\"nope\"]").unwrap();
    let err = App::from_config(&bad, &reg, stats.clone()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`plugins`") && msg.contains("nope") && msg.contains("dashboard"),
        "{msg}"
    );

    // Only the selected plugins are installed.
    let cfg = AppConfig::from_toml_str("plugins = [\"hello\"]").unwrap();
    let app = App::from_config(&cfg, &reg, stats.clone()).unwrap();
    assert_eq!(app.plugins(), &["hello".to_owned()]);
    let (addr, _) = start(app).await;
    assert_eq!(call(addr, Method::Get, "/metrics", b"").await.status, 404);

    let d = site_dir();
    let cfg = AppConfig::from_toml_str(&format!(
        "site_name = \"Test <Site>\"\nplugins = [\"dashboard\", \"metrics\", \"hello\"]\nstatic = [\"/assets={}\"]",
        d.path().join("static").display()
    ))
    .unwrap();
    let app = App::from_config(&cfg, &reg, stats.clone()).unwrap();
    assert_eq!(app.plugins(), &["dashboard", "metrics", "hello", "static"]);
    stats.ticket(true);
    stats.ticket(false);
    stats.rekey();
    let (addr, _) = start(app).await;
    assert_eq!(
        call(addr, Method::Get, "/hello/rust", b"").await.body,
        b"hello rust"
    );
    assert_eq!(
        call(addr, Method::Get, "/assets/css/site.css", b"")
            .await
            .status,
        200
    );
    assert_eq!(call(addr, Method::Get, "/hello/a/b", b"").await.status, 404);

    // Dashboard page and its JSON.
    let r = call(addr, Method::Get, "/dashboard", b"").await;
    assert_eq!(r.status, 200);
    let page = String::from_utf8(r.body).unwrap();
    assert!(page.contains("Test &lt;Site&gt;"));
    assert!(page.contains("/dashboard/api/stats"));
    assert!(
        page.contains("<code>&#x2f;hello&#x2f;{name}</code>"),
        "routes panel"
    );
    assert!(
        page.contains("<span class=\"chip\">metrics</span>"),
        "plugins chips"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
    let r = call(addr, Method::Get, "/dashboard/api/stats", b"").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tickets_admitted"], 1);
    assert_eq!(v["tickets_refused"], 1);
    assert_eq!(v["rekeys"], 1);
    assert!(v["requests_total"].as_u64().unwrap() >= 4);
    assert_eq!(v["rps_series"].as_array().unwrap().len(), 60);

    // /metrics parses with a real Prometheus parser, line by line.
    let r = call(addr, Method::Get, "/metrics", b"").await;
    assert_eq!(
        hdr(&r, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let one = prometheus_parse::Scrape::parse(std::iter::once(Ok(line.to_owned()))).unwrap();
        assert_eq!(one.samples.len(), 1, "unparseable line: {line}");
    }
    let value = |name: &str, label: (&str, &str)| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{other:?}"),
            })
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("betanet_tickets_total", ("result", "refused")), 1.0);
    assert!(value("betanet_requests_total", ("status", "200")) >= 3.0);
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "betanet_request_duration_seconds")
        .expect("latency histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(b) => assert!(b.len() >= 18),
        other => panic!("{other:?}"),
    }
    assert!(text.contains("betanet_uptime_seconds"));
}

async fn upstream_http() -> std::net::SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let method = req.method().to_string();
                    let path = req.uri().to_string();
                    let agent = req
                        .headers()
                        .get("x-client")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let text =
                        format!("{method} {path} {agent} {}", String::from_utf8_lossy(&body));
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(if path.starts_with("/missing") {
                                404
                            } else {
                                200
                            })
                            .header("x-upstream", "yes")
                            .header("set-cookie", "a=1")
                            .header("set-cookie", "b=2")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn proxy_forwards_to_local_http_app() {
    let up = upstream_http().await;
    let cfg = AppConfig::from_toml_str(&format!(
        "plugins = [\"metrics\"]\n[proxy]\nupstream = \"http://{up}\"\nprefix = \"/\"\n"
    ))
    .unwrap();
    let app = App::from_config(
        &cfg,
        &PluginRegistry::with_builtins(),
        Arc::new(NodeStats::new()),
    )
    .unwrap();
    let (addr, _) = start(app).await;
    // Own routes still win over the proxy's catch-all.
    assert_eq!(call(addr, Method::Get, "/metrics", b"").await.status, 200);
    let mut req = betanet_app::client::request(Method::Post, "/api/x?y=1", b"data".to_vec());
    req.headers = vec![(
        "x-client".into(),
        betanet_wire::bar::HeaderValue::Text("t1".into()),
    )];
    let r = betanet_app::client::fetch_tcp(addr, &req, 1 << 20)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        "POST /api/x?y=1 t1 data"
    );
    assert_eq!(hdr(&r, "x-upstream"), Some("yes"));
    assert_eq!(hdr(&r, "set-cookie"), Some("a=1, b=2"));
    let r = call(addr, Method::Del, "/missing/1", b"").await;
    assert_eq!(
        (r.status, String::from_utf8(r.body).unwrap().as_str()),
        (404, "DELETE /missing/1  ")
    );

    // A dead upstream answers 503.
    let cfg = AppConfig::default().with_cli(&[], &[], &[], Some("http://127.0.0.1:1"));
    let app = App::from_config(
        &cfg,
        &PluginRegistry::with_builtins(),
        Arc::new(NodeStats::new()),
    )
    .unwrap();
    let (addr, _) = start(app).await;
    assert_eq!(call(addr, Method::Get, "/", b"").await.status, 503);
}

#[tokio::test]
async fn hooks_and_error_handlers_over_the_wire() {
    let mut app = App::new();
    app.get("/ok", |_r: Request| async { "ok" }).unwrap();
    app.before_request(|r: &mut Request| {
        (r.header("authorization") == Some("no")).then(|| Response::error(401, "denied"))
    });
    app.after_request(|_h, resp: &mut Response| resp.set_header("x-served-by", "betanet-app"));
    app.error_handler(404, |h, _| {
        Response::html(format!("<h1>{} is not here</h1>", h.path)).with_status(404)
    });
    let (addr, _) = start(app).await;
    let r = call(addr, Method::Get, "/ok", b"").await;
    assert_eq!(hdr(&r, "x-served-by"), Some("betanet-app"));
    let r = call_h(addr, "/ok", &[("authorization", "no")]).await;
    assert_eq!(
        (r.status, hdr(&r, "x-served-by")),
        (401, Some("betanet-app"))
    );
    let r = call(addr, Method::Get, "/gone", b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"<h1>/gone is not here</h1>");
    let r = call(addr, Method::Get, "/r", b"").await;
    assert_eq!(r.status, 404);
    let _ = Response::redirect("/x");
}

#[tokio::test]
async fn run_site_serves_until_shutdown() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let cfg = AppConfig::from_toml_str("plugins = [\"metrics\", \"dashboard\"]").unwrap();
        let reg = PluginRegistry::with_builtins();
        betanet_app::run_site(&cfg, &reg, Arc::new(NodeStats::new()), l, async {
            let _ = rx.await;
        })
        .await
    });
    assert_eq!(call(addr, Method::Get, "/metrics", b"").await.status, 200);
    assert_eq!(call(addr, Method::Get, "/dashboard", b"").await.status, 200);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
