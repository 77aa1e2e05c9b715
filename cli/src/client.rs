//! A small HTTP client over hyper.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response, read whole.
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    pub(crate) body: Bytes,
    pub(crate) took: Duration,
}

/// Sends one request and reads the whole answer (30 s at most).
pub(crate) async fn request(
    method: Method,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> anyhow::Result<Reply> {
    if !url.starts_with("http://") {
        bail!(
            "only http:// URLs are supported (put TLS in front of hooksmith, not in the CLI): {url}"
        );
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(body))
        .with_context(|| format!("invalid URL `{url}`"))?;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .with_context(|| format!("{url} did not answer within 30 s"))?
        .with_context(|| format!("cannot reach {url}: is the app running there?"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    Ok(Reply {
        status,
        body,
        took: started.elapsed(),
    })
}
