//! Driving app processes over real sockets: start them, wait for health, send signed pushes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An HTTP/1 client with keep-alive.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A child process killed and reaped when dropped: a test that fails half-way leaves no app
/// process behind it (nor the database connections such a process holds).
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (at most 20 s) until `GET /healthz` answers 200.
pub async fn wait_healthy(client: &HttpClient, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = http::Request::get(format!("http://{addr}/healthz"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let probe = tokio::time::timeout(Duration::from_secs(1), client.request(request)).await;
        if matches!(probe, Ok(Ok(ref response)) if response.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app at {addr} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GitHub `push` body naming `id`.
pub fn push_body(id: &str) -> Vec<u8> {
    serde_json::json!({"ref": "refs/heads/main", "after": id, "commits": [{"id": id}]})
        .to_string()
        .into_bytes()
}

/// Sends one `push` signed with `secret`; `Some(status)` when an answer came back within 5 s.
pub async fn send_push(
    client: &HttpClient,
    addr: &str,
    secret: &str,
    id: &str,
    body: &[u8],
) -> Option<u16> {
    let input = hooksmith::testing::SignInput {
        body,
        timestamp: 0,
        id,
        url: "",
        content_type: None,
    };
    let signature = hooksmith::testing::sign(
        "github",
        &hooksmith::testing::Params::default(),
        secret,
        &input,
    )
    .ok()?;
    let mut request = http::Request::post(format!("http://{addr}/hooks/github"))
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header("content-type", "application/json");
    for (name, value) in signature {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(body))).ok()?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Some(status)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::KillOnDrop;

    /// Dropping the guard (as a panicking test does) leaves no process behind.
    #[test]
    fn a_dropped_guard_kills_and_reaps_its_child() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        let pid = child.id().to_string();
        let status = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
        assert!(status(&pid).is_some(), "the child runs");
        drop(KillOnDrop(child));
        // Reaped, not a zombie: the process is gone from /proc altogether.
        assert_eq!(status(&pid), None);
    }
}
