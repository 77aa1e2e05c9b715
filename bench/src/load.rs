//! The load generator: N keep-alive HTTP/1.1 connections, each sending signed GitHub
//! `pull_request` deliveries one after another (a closed loop, as wrk does), every request with a
//! fresh `X-GitHub-Delivery` so de-duplication does real work.
//!
//! GitHub's signature covers the body only, so each payload is signed once and the signature sent
//! with every request; the receivers still verify every request in full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One payload, ready to send.
pub(crate) struct Payload {
    pub(crate) body: Bytes,
    pub(crate) signature: http::HeaderValue,
}

impl Payload {
    pub(crate) fn new(body: &'static [u8], secret: &str) -> Self {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        Self {
            body: Bytes::from_static(body),
            signature: http::HeaderValue::from_str(&signature).expect("hex is a valid header"),
        }
    }
}

/// What one measurement window saw.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Latencies of the successful requests, in microseconds, sorted.
    pub(crate) latencies_us: Vec<u32>,
}

impl Window {
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile latency in milliseconds.
    pub(crate) fn quantile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies_us.len() as f64 * p).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        f64::from(self.latencies_us[rank - 1]) / 1e3
    }
}

/// Connections sending as fast as they are answered; counting only between `count(true)` and
/// `count(false)`.
pub(crate) struct Load {
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    started: std::sync::Mutex<Option<Instant>>,
    elapsed: std::sync::Mutex<Duration>,
    tasks: Vec<tokio::task::JoinHandle<Window>>,
}

impl Load {
    /// Opens `connections` connections to `addr` and starts sending. `prefix` makes delivery ids
    /// unique across measurements.
    pub(crate) async fn start(
        addr: std::net::SocketAddr,
        connections: usize,
        payload: Arc<Payload>,
        prefix: String,
    ) -> anyhow::Result<Self> {
        let counting = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(connections);
        for c in 0..connections {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await?;
            tokio::spawn(connection);
            tasks.push(tokio::spawn(connection_loop(
                sender,
                addr.to_string(),
                format!("{prefix}-{c}"),
                payload.clone(),
                counting.clone(),
                stop.clone(),
            )));
        }
        Ok(Self {
            counting,
            stop,
            started: std::sync::Mutex::new(None),
            elapsed: std::sync::Mutex::new(Duration::ZERO),
            tasks,
        })
    }

    /// Starts (`true`) or ends (`false`) the measurement window.
    pub(crate) fn count(&self, on: bool) {
        let mut started = self.started.lock().expect("not poisoned");
        if on {
            *started = Some(Instant::now());
        } else if let Some(at) = started.take() {
            *self.elapsed.lock().expect("not poisoned") = at.elapsed();
        }
        self.counting.store(on, Ordering::Relaxed);
    }

    /// Stops sending and sums what the connections saw in the window.
    pub(crate) async fn finish(self) -> anyhow::Result<Window> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Window {
            elapsed: *self.elapsed.lock().expect("not poisoned"),
            ..Window::default()
        };
        for task in self.tasks {
            let window = task.await?;
            total.ok += window.ok;
            total.errors += window.errors;
            total.latencies_us.extend(window.latencies_us);
        }
        total.latencies_us.sort_unstable();
        Ok(total)
    }
}

async fn connection_loop(
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    prefix: String,
    payload: Arc<Payload>,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Window {
    let mut window = Window::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let request = http::Request::post("/hooks/github")
            .header(http::header::HOST, &authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("{prefix}-{i}"))
            .header("x-hub-signature-256", payload.signature.clone())
            .body(Full::new(payload.body.clone()))
            .expect("a valid request");
        let sent = Instant::now();
        let answer = async {
            sender.ready().await.ok()?;
            let response = sender.send_request(request).await.ok()?;
            let status = response.status();
            response.into_body().collect().await.ok()?;
            Some(status)
        }
        .await;
        let counted = counting.load(Ordering::Relaxed);
        match answer {
            Some(http::StatusCode::NO_CONTENT) if counted => {
                window.ok += 1;
                let us = sent.elapsed().as_micros();
                window
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Some(_) if counted => window.errors += 1,
            Some(_) => {}
            None => {
                // The connection is gone: count it once and stop using it.
                window.errors += u64::from(counted);
                break;
            }
        }
    }
    window
}
