//! A custom extractor: implement `hooksmith::FromDelivery` to hand handlers exactly what they
//! need — here the repository a GitHub delivery is about, read with a borrowed parse.
//!
//! Run with `GITHUB_WEBHOOK_SECRET=… cargo run -p example-custom-extractor`.

use hooksmith::{Context, Delivery, FromDelivery, HandlerError, webhook};
use serde::Deserialize;

// ANCHOR: extractor
/// The `owner/name` of the repository a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository(pub String);

impl FromDelivery for Repository {
    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            repository: Repo<'a>,
        }
        #[derive(Deserialize)]
        struct Repo<'a> {
            full_name: &'a str,
        }
        let envelope: Envelope<'_> = serde_json::from_slice(cx.payload())
            .map_err(|e| HandlerError::permanent(format!("no repository in this delivery: {e}")))?;
        Ok(Repository(envelope.repository.full_name.to_owned()))
    }
}
// ANCHOR_END: extractor

/// Takes the custom extractor like any other.
#[webhook(path = "/github", sig = "github", event = "push")]
pub async fn on_push(repository: Repository, delivery: Delivery) {
    tracing::info!(repository = %repository.0, id = delivery.id(), "push");
}

/// The app.
pub fn app() -> Result<hooksmith::AppBuilder, hooksmith::Error> {
    hooksmith::App::builder()
        .only_explicit_handlers()
        .handler::<on_push>()
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
    use hooksmith::store::{JobStatus, MemoryStore};
    use hooksmith::testing::TestClient;
    use serde_json::json;

    #[tokio::test]
    async fn the_extractor_reads_the_repository_or_fails_for_good() {
        let app = super::app()
            .unwrap()
            .store(MemoryStore::new())
            .var("GITHUB_WEBHOOK_SECRET", "s")
            .build()
            .unwrap();
        let client = TestClient::new(app);
        let ok = client
            .post("/github")
            .event("push")
            .json(&json!({"repository": {"full_name": "octo/cat"}}))
            .send()
            .await;
        assert_eq!(
            ok.outcome()
                .await
                .unwrap()
                .handler("on_push")
                .unwrap()
                .status,
            JobStatus::Succeeded
        );
        let missing = client
            .post("/github")
            .event("push")
            .json(&json!({"ref": "main"}))
            .send()
            .await;
        let outcome = missing.outcome().await.unwrap();
        let job = outcome.handler("on_push").unwrap();
        assert_eq!(
            job.status,
            JobStatus::Dead,
            "a permanent extraction error skips retries"
        );
        assert!(job.last_error.as_deref().unwrap().contains("no repository"));
    }
}
