//! The macro-free `Receiver` on its own (seed 001's `WebhookReceiver`).

use std::sync::{Arc, Mutex};

use hooksmith::{Receiver, ReceiverError};
use serde::Deserialize;

const SECRET: &str = "connector secret";

#[derive(Debug, Deserialize)]
struct ActionsPayload {
    session_id: String,
    count: u32,
}

#[derive(Debug, Deserialize)]
struct SummaryPayload {
    summary: String,
}

/// The expected header, computed independently of hooksmith with OpenSSL:
/// `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "connector secret"`.
fn signature(body: &[u8]) -> String {
    match body {
        ACTIONS => "sha256=d6f9e26561e3ffaa4bed4dc9ce0e2582b5214f2eeb51338fccf99e2b37e84bcf".into(),
        _ => panic!("no recorded signature for this body"),
    }
}

const ACTIONS: &[u8] = br#"{"type":"actions","session_id":"s-7","count":2}"#;

fn receiver(log: &Arc<Mutex<Vec<String>>>) -> Receiver {
    let (a, s) = (log.clone(), log.clone());
    Receiver::new(SECRET)
        .unwrap()
        .on("actions", move |payload: ActionsPayload| {
            let log = a.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("actions {} {}", payload.session_id, payload.count));
            }
        })
        .on("summary", move |payload: SummaryPayload| {
            let log = s.clone();
            async move {
                if payload.summary.is_empty() {
                    return Err(hooksmith::HandlerError::new("empty summary"));
                }
                log.lock()
                    .unwrap()
                    .push(format!("summary {}", payload.summary));
                Ok(())
            }
        })
}

#[tokio::test]
async fn handle_verifies_parses_and_dispatches() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = receiver(&log);
    let sig = signature(ACTIONS);
    assert!(r.verify(ACTIONS, Some(&sig)));
    let event = r
        .handle(ACTIONS, Some(&sig))
        .await
        .unwrap()
        .expect("a known event");
    assert_eq!(event.name(), "actions");
    let typed: ActionsPayload = event.json().unwrap();
    assert_eq!(typed.session_id, "s-7");
    assert_eq!(*log.lock().unwrap(), ["actions s-7 2"]);
}

#[tokio::test]
async fn bad_signatures_are_refused_before_any_callback() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = receiver(&log);
    let sig = signature(ACTIONS);
    for bad in [
        None,
        Some(""),
        Some("sha256=00"),
        Some(sig.trim_start_matches("sha256=")),
    ] {
        assert!(!r.verify(ACTIONS, bad));
        assert!(
            matches!(
                r.handle(ACTIONS, bad).await,
                Err(ReceiverError::InvalidSignature)
            ),
            "{bad:?}"
        );
    }
    let tampered = br#"{"type":"actions","session_id":"s-8","count":2}"#;
    assert!(matches!(
        r.handle(tampered, Some(&sig)).await,
        Err(ReceiverError::InvalidSignature)
    ));
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn parse_skips_verification_and_unknown_events_are_none() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = receiver(&log);
    assert_eq!(r.parse(ACTIONS).unwrap().unwrap().name(), "actions");
    assert!(r.parse(br#"{"type":"heartbeat"}"#).unwrap().is_none());
    assert!(matches!(r.parse(b"[1]"), Err(ReceiverError::Malformed(_))));
    assert!(log.lock().unwrap().is_empty(), "parse never dispatches");
}

#[tokio::test]
async fn callback_failures_and_type_mismatches_are_errors() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::unverified().on("summary", |_: SummaryPayload| async {
        Err::<(), _>(hooksmith::HandlerError::new("empty summary"))
    });
    let failed = r.handle(br#"{"type":"summary","summary":""}"#, None).await;
    assert!(matches!(failed, Err(ReceiverError::Handler(e)) if e.message() == "empty summary"));
    // Unsigned: refused before the payload's type is even looked at.
    let unsigned = receiver(&log)
        .handle(br#"{"type":"actions","count":"x"}"#, None)
        .await;
    assert!(matches!(unsigned, Err(ReceiverError::InvalidSignature)));
    let mismatch = Receiver::unverified()
        .on("actions", |_: ActionsPayload| async {})
        .handle(br#"{"type":"actions","count":"x"}"#, None)
        .await;
    assert!(matches!(mismatch, Err(ReceiverError::Malformed(_))));
}

#[test]
fn handle_blocking_works_from_synchronous_code() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let r = receiver(&log);
    let event = r
        .handle_blocking(ACTIONS, Some(&signature(ACTIONS)))
        .unwrap();
    assert_eq!(event.unwrap().name(), "actions");
    assert_eq!(*log.lock().unwrap(), ["actions s-7 2"]);
}

#[tokio::test]
async fn handle_blocking_inside_a_runtime_is_an_error_not_a_deadlock() {
    let r = Receiver::unverified();
    assert!(matches!(
        r.handle_blocking(b"{}", None),
        Err(ReceiverError::InsideRuntime)
    ));
}

#[test]
fn an_empty_secret_is_refused() {
    assert!(matches!(Receiver::new(""), Err(ReceiverError::Config(_))));
}
