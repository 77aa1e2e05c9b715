//! Embedding hooksmith in an existing axum app: its own routes, its own layers, and the webhook
//! endpoints merged in (or nested under a prefix).
//!
//! Run with `GITHUB_WEBHOOK_SECRET=… cargo run -p example-embed-router`.

use hooksmith::axum::{Router, middleware, response::Response, routing::get};
use hooksmith::{Delivery, webhook};

/// A webhook endpoint living beside the app's own API.
#[webhook(path = "/webhooks/github", sig = "github", event = "push")]
pub async fn on_push(delivery: Delivery) {
    tracing::info!(id = delivery.id(), "push");
}

/// The existing app's response layer: every answer, webhook or not, gets it.
async fn served_by(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-served-by",
        hooksmith::axum::http::HeaderValue::from_static("my-app"),
    );
    response
}

// ANCHOR: merge
/// The existing app with hooksmith's router merged in.
pub fn router(app: &hooksmith::App) -> Router {
    Router::new()
        .route("/api/status", get(|| async { "all good\n" }))
        .merge(app.router())
        .layer(middleware::map_response(served_by))
}
// ANCHOR_END: merge

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let app = hooksmith::App::builder()
        .only_explicit_handlers()
        .handler::<on_push>()
        .from_env()?
        .build()?;
    let listener = tokio::net::TcpListener::bind(app.addr()).await?;
    // The existing app serves; hooksmith's workers run as long as its router does.
    hooksmith::axum::serve(listener, router(&app))
        .with_graceful_shutdown(hooksmith::shutdown_signal())
        .await?;
    app.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hooksmith::axum::body::Body;
    use hooksmith::axum::http::Request;
    use hooksmith::axum::response::Response;
    use hooksmith::store::MemoryStore;
    use tower_service::Service;

    async fn call(router: &hooksmith::axum::Router, request: Request<Body>) -> Response {
        let mut router = router.clone();
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        router.call(request).await.unwrap()
    }

    #[tokio::test]
    async fn the_apps_routes_and_the_webhooks_both_pass_through_its_layers() {
        let app = hooksmith::App::builder()
            .only_explicit_handlers()
            .handler::<super::on_push>()
            .store(MemoryStore::new())
            .var("GITHUB_WEBHOOK_SECRET", "s")
            .build()
            .unwrap();
        let router = super::router(&app);
        let status = call(
            &router,
            Request::get("/api/status").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status.status(), 200);
        assert_eq!(status.headers()["x-served-by"], "my-app");
        let (name, value) = app.sign("/webhooks/github", b"{}").unwrap().remove(0);
        let hook = Request::post("/webhooks/github")
            .header("x-github-event", "push")
            .header(name, value)
            .body(Body::from("{}"))
            .unwrap();
        let response = call(&router, hook).await;
        assert_eq!(response.status(), 204);
        assert_eq!(response.headers()["x-served-by"], "my-app");
    }
}
