//! Handler runs started by requests that `App::serve_on` serves start in the connection's task
//! once the answers are written: a run that finishes at its first poll is done there, one that
//! has to wait moves to a task of its own — the answer never waits for it, and it finishes even
//! when the client has hung up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hooksmith::webhook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Runs of `waits` that got past the gate.
static WAITED: AtomicUsize = AtomicUsize::new(0);
/// Closed until the test opens it.
static GATE: Semaphore = Semaphore::const_new(0);
/// Runs of `quick`.
static QUICK: AtomicUsize = AtomicUsize::new(0);

#[webhook(path = "/waits", sig = "none")]
async fn waits() {
    let _permit = GATE.acquire().await.expect("never closed");
    WAITED.fetch_add(1, Ordering::SeqCst);
}

#[webhook(path = "/quick", sig = "none")]
async fn quick() {
    QUICK.fetch_add(1, Ordering::SeqCst);
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` on `stream` and reads one answer's head.
async fn send(stream: &mut tokio::net::TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn runs_start_after_the_answer_and_outlive_the_connection() {
    let app = hooksmith::App::builder().ignore_env().build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(app.serve_on(listener, std::future::pending()));

    // Handlers that finish at once, two deliveries on one connection: both run.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for body in [r#"{"n":1}"#, r#"{"n":2}"#] {
        let answer = send(&mut stream, &post("/quick", body)).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
    eventually("both quick runs", || QUICK.load(Ordering::SeqCst) == 2).await;

    // A handler that waits: the delivery is answered while it waits, and the client hangs up.
    let answer = send(&mut stream, &post("/waits", r#"{"n":3}"#)).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(WAITED.load(Ordering::SeqCst), 0, "the gate is still closed");
    GATE.add_permits(1);
    eventually(
        "the waiting run finishes after its connection closed",
        || WAITED.load(Ordering::SeqCst) == 1,
    )
    .await;
}
