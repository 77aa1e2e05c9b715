//! A multi-tenant receiver (seed 002): one endpoint, `/webhooks/github/{connection}`, and one
//! connection per customer, each with its own secret, created through the admin API:
//!
//! ```text
//! curl -X POST http://127.0.0.1:3000/admin/connections -H "Authorization: Bearer $HOOKSMITH_ADMIN_TOKEN" \
//!      -H 'Content-Type: application/json' \
//!      -d '{"name":"acme","type":"github","secret":"…","nonce_header":"X-GitHub-Delivery"}'
//! ```
//!
//! Run with `HOOKSMITH_ADMIN_TOKEN=… cargo run -p example-multi-tenant`.

use hooksmith::{Delivery, webhook};

// ANCHOR: tenant
/// Every tenant's pushes; `Delivery::connection()` says whose.
#[webhook(path = "/webhooks/github/{connection}", sig = "github", event = "push")]
pub async fn tenant_push(delivery: Delivery) -> hooksmith::Result {
    tracing::info!(
        tenant = delivery.connection().unwrap_or("?"),
        id = delivery.id(),
        "push"
    );
    Ok(())
}
// ANCHOR_END: tenant

/// The app.
pub fn app() -> Result<hooksmith::AppBuilder, hooksmith::Error> {
    hooksmith::App::builder()
        .only_explicit_handlers()
        .handler::<tenant_push>()
        .from_env()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    app()?.build()?.serve().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hooksmith::axum::body::Body;
    use hooksmith::store::MemoryStore;
    use hooksmith::testing::{Params, SignInput, TestClient, sign};

    async fn admin(client: &TestClient, body: serde_json::Value) -> u16 {
        let request = hooksmith::axum::http::Request::post("/admin/connections")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        client.call(request).await.status().as_u16()
    }

    #[tokio::test]
    async fn each_tenant_verifies_with_its_own_secret() {
        let app = super::app()
            .unwrap()
            .store(MemoryStore::new())
            .admin_token("t")
            .build()
            .unwrap();
        let client = TestClient::new(app);
        assert_eq!(
            client
                .post("/webhooks/github/acme")
                .event("push")
                .send()
                .await
                .status(),
            404,
            "no connection yet"
        );
        let acme = serde_json::json!({"name": "acme", "type": "github", "secret": "acme-secret"});
        assert_eq!(admin(&client, acme).await, 201);
        let body = br#"{"ref":"main"}"#;
        let input = SignInput {
            body,
            timestamp: 0,
            id: "",
            url: "",
            content_type: None,
        };
        for (secret, expected) in [("acme-secret", 204), ("globex-secret", 401)] {
            let (name, value) = sign("github", &Params::default(), secret, &input)
                .unwrap()
                .remove(0);
            let response = client
                .post("/webhooks/github/acme")
                .event("push")
                .body(body.to_vec(), "application/json")
                .header(name.as_str(), value.to_str().unwrap())
                .unsigned()
                .send()
                .await;
            assert_eq!(response.status(), expected, "{secret}");
        }
    }
}
