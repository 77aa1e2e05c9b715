//! Bounds and answers under misuse, over a real socket: slow bodies, an in-flight cap, compressed
//! bodies, oversized header sections, and a panic in request handling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hooksmith::store::{
    ClaimedJob, Connection, DeliveryQuery, DeliverySummary, Ingest, JobResult, MemoryStore,
    NewDelivery, NewJob, Retention, Store, StoreFuture, StoreInfo, StoredDelivery,
};
use hooksmith::webhook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[webhook(path = "/hard", sig = "none")]
async fn hard() {}

async fn serve(builder: hooksmith::AppBuilder) -> String {
    let app = builder.ignore_env().build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(app.serve_on(listener, std::future::pending()));
    addr
}

/// Writes `head` (and `body`), then reads what comes back within `wait`.
async fn exchange(addr: &str, head: &str, body: &[u8], wait: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut answer))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn post(length: usize, extra: &str) -> String {
    format!(
        "POST /hard HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_with_408() {
    let addr = serve(
        hooksmith::App::builder().body_timeouts(Duration::from_millis(200), Duration::from_secs(2)),
    )
    .await;
    let started = Instant::now();
    let answer = exchange(&addr, &post(100, ""), b"{\"a\":", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // One byte at a time, under the idle timeout but past the deadline.
    let addr = serve(
        hooksmith::App::builder()
            .body_timeouts(Duration::from_millis(300), Duration::from_millis(600)),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(post(100, "").as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    for _ in 0..20 {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = vec![0; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_get_503_at_once() {
    let addr = serve(
        hooksmith::App::builder()
            .max_in_flight(1)
            .body_timeouts(Duration::from_secs(5), Duration::from_secs(5)),
    )
    .await;
    // One request holds the only place, waiting for the rest of its body.
    let mut holder = tokio::net::TcpStream::connect(&addr).await.unwrap();
    holder.write_all(post(10, "").as_bytes()).await.unwrap();
    holder.write_all(b"{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = exchange(&addr, &post(2, ""), b"{}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    // Once it finishes, the place is free again.
    holder.write_all(b"\"a\":1}    ").await.unwrap();
    let mut buf = vec![0; 1024];
    let n = holder.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 204"));
    let answer = exchange(&addr, &post(2, ""), b"{}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

#[tokio::test]
async fn compressed_bodies_and_oversized_headers_are_refused() {
    let addr = serve(hooksmith::App::builder()).await;
    let answer = exchange(
        &addr,
        &post(2, "Content-Encoding: gzip\r\n"),
        b"{}",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    let answer = exchange(
        &addr,
        &post(2, "Content-Encoding: identity\r\n"),
        b"{}",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let many: String = (0..200)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(20)))
        .collect();
    let answer = exchange(&addr, &post(2, &many), b"{}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// A memory store whose ingest panics on a body starting `{"boom"`, and holds a body starting
/// `{"wait"` until the test opens its gate.
#[derive(Debug)]
struct TestStore {
    inner: Arc<MemoryStore>,
    /// Told when an ingest starts waiting at the gate.
    waiting: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Default for TestStore {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            waiting: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Store for TestStore {
    fn info(&self) -> StoreInfo {
        self.inner.info()
    }
    fn ingest(&self, delivery: NewDelivery) -> StoreFuture<'_, Ingest> {
        assert!(
            !delivery.body.starts_with(b"{\"boom\""),
            "the store exploded"
        );
        Box::pin(async move {
            if delivery.body.starts_with(b"{\"wait\"") {
                self.waiting.notify_one();
                let _open = self.gate.acquire().await;
            }
            self.inner.ingest(delivery).await
        })
    }
    fn claim(&self, limit: usize, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, Vec<ClaimedJob>> {
        self.inner.claim(limit, lease_ms, now_ms)
    }
    fn next_due(&self) -> StoreFuture<'_, Option<i64>> {
        self.inner.next_due()
    }
    fn finish(&self, job: i64, result: JobResult, now_ms: i64) -> StoreFuture<'_, ()> {
        self.inner.finish(job, result, now_ms)
    }
    fn renew(&self, job: i64, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, ()> {
        self.inner.renew(job, lease_ms, now_ms)
    }
    fn replay(
        &self,
        delivery: i64,
        jobs: Vec<NewJob>,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'_, Vec<i64>> {
        self.inner.replay(delivery, jobs, lease_ms, now_ms)
    }
    fn requeue_dead(&self, limit: usize, now_ms: i64) -> StoreFuture<'_, u64> {
        self.inner.requeue_dead(limit, now_ms)
    }
    fn purge(&self, policy: Retention) -> StoreFuture<'_, (u64, u64)> {
        self.inner.purge(policy)
    }
    fn release<'a>(&'a self, jobs: &'a [i64], now_ms: i64) -> StoreFuture<'a, ()> {
        self.inner.release(jobs, now_ms)
    }
    fn queue_depth(&self) -> StoreFuture<'_, u64> {
        self.inner.queue_depth()
    }
    fn put_connection(&self, connection: Connection) -> StoreFuture<'_, ()> {
        self.inner.put_connection(connection)
    }
    fn connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Connection>> {
        self.inner.connection(name)
    }
    fn connections(&self) -> StoreFuture<'_, Vec<Connection>> {
        self.inner.connections()
    }
    fn delete_connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        self.inner.delete_connection(name)
    }
    fn list<'a>(&'a self, query: &'a DeliveryQuery) -> StoreFuture<'a, Vec<DeliverySummary>> {
        self.inner.list(query)
    }
    fn get(&self, id: i64) -> StoreFuture<'_, Option<(DeliverySummary, Arc<StoredDelivery>)>> {
        self.inner.get(id)
    }
}

#[tokio::test]
async fn a_panic_in_request_handling_is_a_500_and_the_process_keeps_serving() {
    let addr = serve(hooksmith::App::builder().store(TestStore::default())).await;
    let boom = br#"{"boom":1}"#;
    let answer = exchange(&addr, &post(boom.len(), ""), boom, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.ends_with("internal error\n"),
        "no detail leaks: {answer}"
    );
    let answer = exchange(&addr, &post(2, ""), b"{}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

/// `App::serve` hands a delivery to its endpoint without the router when the path is the
/// endpoint's own; every other request still goes through the router. Both must answer alike:
/// each request below is sent over a socket to `serve_on` and, in-process, to the app's router,
/// and the two statuses compared — the path compared whole and as sent, the query string aside,
/// the method checked by the endpoint, per-tenant and admin paths left to the router.
#[tokio::test]
async fn deliveries_served_past_the_router_are_answered_as_the_router_would() {
    use tower::ServiceExt;

    let app = hooksmith::App::builder()
        .admin_token("admin-token")
        .ignore_env()
        .build()
        .unwrap();
    let router = app.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(app.serve_on(listener, std::future::pending()));
    let cases = [
        ("POST", "/hard", Some("204")),
        ("POST", "/hard?source=test", Some("204")),
        ("PUT", "/hard", Some("405")),
        ("GET", "/hard", Some("405")),
        ("POST", "/hard/", Some("404")),
        ("POST", "/HARD", Some("404")),
        ("POST", "/har", Some("404")),
        ("POST", "/hardly", Some("404")),
        ("POST", "/%68ard", Some("404")),
        ("POST", "//hard", None),
        ("GET", "/healthz", Some("200")),
        ("POST", "/healthz", None),
        ("GET", "/metrics", Some("200")),
        ("GET", "/admin/deliveries", Some("401")),
        ("POST", "/tenants/acme/hook", Some("404")),
        ("POST", "/tenants//hook", None),
        ("POST", "/", Some("404")),
    ];
    for (method, target, expected) in cases {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        let served = exchange(&addr, &head, b"{}", Duration::from_secs(5)).await;
        let routed = router
            .clone()
            .oneshot(
                http::Request::builder()
                    .method(method)
                    .uri(target)
                    .header("content-type", "application/json")
                    .body(axum_body(b"{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = routed.status().as_str().to_owned();
        assert!(
            served.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {target}: served {served:?}, routed {status}"
        );
        if let Some(expected) = expected {
            assert_eq!(status, expected, "{method} {target}");
        }
        if status == "405" {
            let allow = routed.headers()["allow"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                served
                    .to_ascii_lowercase()
                    .contains(&format!("\r\nallow: {allow}\r\n")),
                "{method} {target}: served {served:?}, routed allow {allow}"
            );
            if target.starts_with("/hard") {
                assert_eq!(allow, "post");
            }
        }
    }
}

/// A per-tenant endpoint: requests to it are left to the router.
#[webhook(path = "/tenants/{connection}/hook", sig = "github")]
async fn tenant_hook() {}

fn axum_body(bytes: &'static [u8]) -> hooksmith::axum::body::Body {
    hooksmith::axum::body::Body::from(bytes)
}

/// A client that hangs up while its delivery is being stored takes nothing with it: the store
/// finishes, and the handler the delivery matched runs.
#[tokio::test]
async fn a_delivery_whose_client_hangs_up_while_it_is_stored_is_still_handled() {
    let store = TestStore::default();
    let (history, waiting, gate) = (
        store.inner.clone(),
        store.waiting.clone(),
        store.gate.clone(),
    );
    let addr = serve(hooksmith::App::builder().store(store)).await;
    let body = br#"{"wait":1}"#;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(post(body.len(), "").as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting.notified())
        .await
        .expect("the delivery reached the store");
    drop(stream);
    // Time for the server to see the connection closed and drop what it was doing for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = history
            .list(&DeliveryQuery {
                limit: 10,
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();
        if listed
            .iter()
            .any(|d| d.status == hooksmith::store::DeliveryStatus::Acknowledged)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery was not stored and handled: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected() {
    let addr =
        serve(hooksmith::App::builder().header_read_timeout(Duration::from_millis(300))).await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /hard HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("not left hanging");
    // The server answers 408 or closes the connection; either way it does not wait forever.
    let n = read.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
