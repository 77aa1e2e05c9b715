//! Helpers shared by hooksmith's end-to-end tests: drive an app's router in-process and read its
//! admin API.

use std::time::{Duration, Instant};

pub mod process;

/// The guide's `introduction` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/introduction.md")]
mod book_introduction {}

/// The guide's `quickstart` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/quickstart.md")]
mod book_quickstart {}

/// The guide's `attribute` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/attribute.md")]
mod book_attribute {}

/// The guide's `schemes` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/schemes.md")]
mod book_schemes {}

/// The guide's `filters` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/filters.md")]
mod book_filters {}

/// The guide's `extractors` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/extractors.md")]
mod book_extractors {}

/// The guide's `delivery` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/delivery.md")]
mod book_delivery {}

/// The guide's `storage` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/storage.md")]
mod book_storage {}

/// The guide's `admin-and-cli` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/admin-and-cli.md")]
mod book_admin_and_cli {}

/// The guide's `testing` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/testing.md")]
mod book_testing {}

/// The guide's `security` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/security.md")]
mod book_security {}

/// The guide's `operations` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/operations.md")]
mod book_operations {}

/// The guide's `performance` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/performance.md")]
mod book_performance {}

/// The guide's performance log, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/performance-log.md")]
mod book_performance_log {}

/// The guide's `migrating` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/migrating.md")]
mod book_migrating {}

/// The guide's `troubleshooting` chapter, its code blocks compiled as doctests.
#[doc = include_str!("../../book/src/troubleshooting.md")]
mod book_troubleshooting {}

/// The README's code, compiled as a doctest.
#[doc = include_str!("../../README.md")]
mod readme {}

use hooksmith::App;
use hooksmith::axum::Router;
use hooksmith::axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The admin token the harness configures.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// An app and its router, driven with `oneshot`.
pub struct Harness {
    /// The app.
    pub app: App,
    /// Its router.
    pub router: Router,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl Harness {
    /// Wraps a built app.
    pub fn new(app: App) -> Self {
        let router = app.router();
        Self { app, router }
    }

    /// Sends a request through the router.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(body.into()).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// POSTs `body` to `path` signed for that endpoint, with extra headers.
    pub async fn post_signed(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        let mut all: Vec<(&str, String)> = headers.to_vec();
        let signature = self.app.sign(path, body).expect("endpoint exists");
        let names: Vec<String> = signature
            .iter()
            .map(|(n, _)| n.as_str().to_owned())
            .collect();
        for ((_, value), name) in signature.iter().zip(&names) {
            all.push((name.as_str(), value.to_str().expect("ascii").to_owned()));
        }
        all.push(("content-type", "application/json".into()));
        self.request("POST", path, &all, body.to_vec()).await
    }

    /// GETs an admin path with the token and parses the JSON answer.
    pub async fn admin(&self, path: &str) -> serde_json::Value {
        let reply = self
            .request(
                "GET",
                path,
                &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
                Body::empty(),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        serde_json::from_slice(&reply.body).expect("admin JSON")
    }

    /// The newest deliveries on an endpoint.
    pub async fn deliveries(&self, endpoint: &str) -> Vec<serde_json::Value> {
        let list = self
            .admin(&format!("/admin/deliveries?endpoint={endpoint}"))
            .await;
        list.as_array().cloned().unwrap_or_default()
    }

    /// Waits (at most 10 s) until the delivery with this provider id has `status`, and returns it.
    pub async fn wait_for_status(
        &self,
        endpoint: &str,
        delivery_id: &str,
        status: &str,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = self
                .admin(&format!(
                    "/admin/deliveries?endpoint={endpoint}&delivery_id={delivery_id}"
                ))
                .await;
            if let Some(found) = list.as_array().and_then(|l| l.first()) {
                if found["status"] == status {
                    return found.clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "delivery {delivery_id} stayed {found}, expected {status}"
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "delivery {delivery_id} was never stored"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The handler entry called `name` in a delivery's JSON.
pub fn handler<'a>(delivery: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    delivery["handlers"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no handler {name} in {delivery}"))
}
