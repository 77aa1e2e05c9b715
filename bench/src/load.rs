//! The load generator: N keep-alive HTTP/1.1 connections, each sending signed GitHub
//! `pull_request` deliveries one after another (a closed loop, as wrk does), every request with a
//! fresh `X-GitHub-Delivery` so de-duplication does real work.
//!
//! GitHub's signature covers the body only, so each payload is signed once and the signature sent
//! with every request; the receivers still verify every request in full.
//!
//! Each connection writes a request prepared once, its delivery id's counter rewritten in place,
//! and reads the answer's head (and body, if one is announced): a general HTTP client costs the
//! load generator about as much per request as the fastest receiver here, and would measure
//! itself rather than the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let request = Request::new(&addr.to_string(), &format!("{prefix}-{c}"), &payload);
            tasks.push(tokio::spawn(connection_loop(
                stream,
                request,
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

/// A request's bytes, written once; only the delivery id's counter changes between sends.
struct Request {
    bytes: Vec<u8>,
    /// Where the counter's fixed-width digits are in `bytes`.
    counter: std::ops::Range<usize>,
}

impl Request {
    const DIGITS: usize = 20;

    fn new(authority: &str, id_prefix: &str, payload: &Payload) -> Self {
        let mut bytes = format!(
            "POST /hooks/github HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
             x-github-event: pull_request\r\nx-github-delivery: {id_prefix}-"
        )
        .into_bytes();
        let at = bytes.len();
        bytes.extend_from_slice(&[b'0'; Self::DIGITS]);
        bytes.extend_from_slice(b"\r\nx-hub-signature-256: ");
        bytes.extend_from_slice(payload.signature.as_bytes());
        bytes.extend_from_slice(
            format!("\r\ncontent-length: {}\r\n\r\n", payload.body.len()).as_bytes(),
        );
        bytes.extend_from_slice(&payload.body);
        Self {
            bytes,
            counter: at..at + Self::DIGITS,
        }
    }

    /// Sets the delivery id's counter to `n`.
    fn number(&mut self, mut n: u64) {
        for digit in self.bytes[self.counter.clone()].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

/// The status of the response at the head of `buf[..len]` and the length of the whole response,
/// once its head is complete; `Err` for a response this client does not read (no length given for
/// a body).
fn response(buf: &[u8]) -> Result<Option<(u16, usize)>, ()> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(())?;
    let mut body = 0;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(())?;
        if name.eq_ignore_ascii_case("content-length") {
            body = value.trim().parse::<usize>().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        }
    }
    if status == 204 || status == 304 || status < 200 {
        body = 0;
    }
    Ok(Some((status, head_end + 4 + body)))
}

async fn connection_loop(
    mut stream: TcpStream,
    mut request: Request,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Window {
    let mut window = Window::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        request.number(i);
        let sent = Instant::now();
        let answer = async {
            stream.write_all(&request.bytes).await.ok()?;
            loop {
                if let Some((status, len)) = response(&buf[..filled]).ok()? {
                    if filled >= len {
                        buf.copy_within(len..filled, 0);
                        filled -= len;
                        return Some(status);
                    }
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                }
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match stream.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => filled += n,
                }
            }
        }
        .await;
        let counted = counting.load(Ordering::Relaxed);
        match answer {
            Some(204) if counted => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_counter_and_the_payload() {
        let payload = Payload::new(b"{}", "s");
        let mut request = Request::new("127.0.0.1:1", "p-3", &payload);
        request.number(42);
        let text = String::from_utf8(request.bytes).expect("ascii");
        assert!(
            text.contains("\r\nx-github-delivery: p-3-00000000000000000042\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\ncontent-length: 2\r\n\r\n{}"), "{text}");
    }

    #[test]
    fn responses_are_read_to_their_end() {
        let no_content = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n";
        assert_eq!(response(no_content), Ok(Some((204, no_content.len()))));
        let refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!";
        assert_eq!(response(refused), Ok(Some((401, refused.len()))));
        assert_eq!(response(b"HTTP/1.1 204 No Content\r\nda"), Ok(None));
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(())
        );
    }
}
