//! Stripe payments with idempotent effects. Stripe retries until it gets a 2xx and hooksmith
//! runs handlers at least once, so the effect (crediting an order) is recorded under the event's
//! id: a second run finds it and does nothing.
//!
//! Run with `STRIPE_WEBHOOK_SECRET=whsec_… cargo run -p example-stripe-payments`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hooksmith::{Delivery, HandlerError, Json, State, webhook};
use serde::Deserialize;

/// Orders paid, by event id: stands in for a table with a unique key on the event id.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<String, u64>>>);

impl Ledger {
    /// Records a payment once per event id; `false` when it was already recorded.
    pub fn credit(&self, event_id: &str, amount: u64) -> bool {
        let mut ledger = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ledger.contains_key(event_id) {
            return false;
        }
        ledger.insert(event_id.to_owned(), amount);
        true
    }

    /// The total credited.
    pub fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum()
    }
}

/// A Stripe event with a payment intent.
#[derive(Debug, Deserialize)]
pub struct PaymentEvent {
    /// `evt_…`.
    pub id: String,
    /// The event's object.
    pub data: PaymentData,
}

/// `data` of a payment event.
#[derive(Debug, Deserialize)]
pub struct PaymentData {
    /// The payment intent.
    pub object: PaymentIntent,
}

/// A payment intent.
#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    /// Amount in the smallest currency unit.
    pub amount: u64,
    /// Our order id, set as metadata when the intent was created.
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

// ANCHOR: handler
/// Credits the order, once per event.
#[webhook(path = "/stripe", sig = "stripe", event = "payment_intent.succeeded")]
pub async fn payment_succeeded(
    event: Json<PaymentEvent>,
    ledger: State<Ledger>,
    delivery: Delivery,
) -> hooksmith::Result {
    if !event.data.object.metadata.contains_key("order_id") {
        // Retrying cannot fix this: straight to dead letters, for a person to look at.
        return Err(HandlerError::permanent("payment without an order_id"));
    }
    if !ledger.credit(&event.id, event.data.object.amount) {
        tracing::info!(
            id = delivery.id(),
            attempt = delivery.attempt(),
            "already credited"
        );
    }
    Ok(())
}
// ANCHOR_END: handler

/// The app.
pub fn app(ledger: Ledger) -> Result<hooksmith::AppBuilder, hooksmith::Error> {
    hooksmith::App::builder()
        .only_explicit_handlers()
        .handler::<payment_succeeded>()
        .state(ledger)
        .from_env()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    app(Ledger::default())?.build()?.serve().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hooksmith::store::{JobStatus, MemoryStore};
    use hooksmith::testing::TestClient;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_payment_is_credited_once_however_often_it_arrives() {
        let ledger = Ledger::default();
        let app = app(ledger.clone())
            .unwrap()
            .store(MemoryStore::new())
            .var("STRIPE_WEBHOOK_SECRET", "whsec_test")
            .admin_token("t")
            .build()
            .unwrap();
        let client = TestClient::new(app);
        let paid = json!({"id": "evt_1", "type": "payment_intent.succeeded",
                          "data": {"object": {"amount": 2000, "metadata": {"order_id": "o-7"}}}});
        for _ in 0..3 {
            let response = client.post("/stripe").json(&paid).send().await;
            assert_eq!(response.status(), 204);
            response.outcome().await.unwrap();
        }
        assert_eq!(ledger.total(), 2000);
        // An operator's replay runs the handler again on purpose: the ledger still credits once.
        let stored = client
            .post("/stripe")
            .json(&paid)
            .send()
            .await
            .outcome()
            .await
            .unwrap();
        let replay = hooksmith::axum::http::Request::post(format!(
            "/admin/deliveries/{}/replay?force=true",
            stored.id
        ))
        .header("authorization", "Bearer t")
        .body(hooksmith::axum::body::Body::empty())
        .unwrap();
        let report = client.call(replay).await;
        assert_eq!(report.status(), 200);
        assert_eq!(
            stored.handler("payment_succeeded").unwrap().status,
            JobStatus::Succeeded
        );
        assert_eq!(ledger.total(), 2000);
    }

    #[tokio::test]
    async fn a_payment_without_an_order_goes_to_dead_letters_at_once() {
        let app = app(Ledger::default())
            .unwrap()
            .store(MemoryStore::new())
            .var("STRIPE_WEBHOOK_SECRET", "whsec_test")
            .build()
            .unwrap();
        let client = TestClient::new(app);
        let orphan = json!({"id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {"amount": 5}}});
        let outcome = client
            .post("/stripe")
            .json(&orphan)
            .send()
            .await
            .outcome()
            .await
            .unwrap();
        let job = outcome.handler("payment_succeeded").unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Dead, 1));
    }
}
