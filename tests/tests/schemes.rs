//! Every scheme end to end through the router: signed as the provider signs, routed to its
//! handler, its timestamp window at ±(tolerance − 1) and ±(tolerance + 1), and the answers
//! hooksmith gives on the provider's behalf (Slack's challenge, Discord's PING).

use std::sync::{Arc, Mutex};

use hooksmith::testing::{ManualClock, Params, SignInput, sign};
use hooksmith::{Delivery, Form, State, webhook};
use hooksmith_tests::{ADMIN_TOKEN, Harness, handler};

const NOW: i64 = 1_700_000_000;
const TOLERANCE: i64 = 300;
/// RFC 8032's first test key pair.
const ED_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[webhook(path = "/x/github", sig = "github", event = "push")]
async fn on_github(d: Delivery, seen: State<Seen>) {
    seen.push(format!("github {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/stripe", sig = "stripe", event = "payment_intent.*")]
async fn on_stripe(d: Delivery, seen: State<Seen>) {
    seen.push(format!("stripe {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/standard", sig = "standard", event = "user.created")]
async fn on_standard(d: Delivery, seen: State<Seen>) {
    seen.push(format!("standard {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/slack", sig = "slack", event = "event_callback")]
async fn on_slack(d: Delivery, seen: State<Seen>) {
    seen.push(format!("slack {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/shopify", sig = "shopify", event = "orders/create")]
async fn on_shopify(d: Delivery, seen: State<Seen>) {
    seen.push(format!("shopify {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/gitlab", sig = "gitlab", event = "Push Hook")]
async fn on_gitlab(d: Delivery, seen: State<Seen>) {
    seen.push(format!("gitlab {} {}", d.event(), d.id()));
}

#[webhook(path = "/x/linear", sig = "linear", event = "Issue.create")]
async fn on_linear(d: Delivery, seen: State<Seen>) {
    seen.push(format!("linear {} {}", d.event(), d.id()));
}

#[derive(serde::Deserialize)]
struct CallStatus {
    #[serde(rename = "CallSid")]
    call_sid: String,
}

#[webhook(path = "/x/twilio", sig = "twilio", filter(CallStatus = "completed"))]
async fn on_twilio(call: Form<CallStatus>, d: Delivery, seen: State<Seen>) {
    seen.push(format!("twilio {} {}", call.call_sid, d.id()));
}

#[webhook(path = "/x/discord", sig = "discord", event = "2", ack = "handled")]
async fn on_discord(d: Delivery, seen: State<Seen>) -> hooksmith::axum::Json<serde_json::Value> {
    seen.push(format!("discord {} {}", d.event(), d.id()));
    hooksmith::axum::Json(serde_json::json!({"type": 4, "data": {"content": "pong"}}))
}

#[webhook(path = "/x/jwt", sig = "jwt", id_field = "id")]
async fn on_jwt(d: Delivery, seen: State<Seen>) {
    seen.push(format!("jwt {}", d.id()));
}

/// One scheme's endpoint, secrets and a delivery for it.
struct Provider {
    path: &'static str,
    scheme: &'static str,
    /// What the endpoint verifies with, and what the sender signs with.
    verify_secret: &'static str,
    sign_secret: &'static str,
    event_headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    timestamped: bool,
}

fn providers() -> Vec<Provider> {
    let p = |path, scheme, secret, events: &[(&'static str, &str)], timestamped| Provider {
        path,
        scheme,
        verify_secret: secret,
        sign_secret: secret,
        event_headers: events.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        content_type: "application/json",
        timestamped,
    };
    vec![
        p(
            "/x/github",
            "github",
            "gh",
            &[("x-github-event", "push"), ("x-github-delivery", "gh-1")],
            false,
        ),
        p("/x/stripe", "stripe", "whsec_stripe", &[], true),
        p(
            "/x/standard",
            "standard",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &[],
            true,
        ),
        p("/x/slack", "slack", "slack-secret", &[], true),
        p(
            "/x/shopify",
            "shopify",
            "shop",
            &[
                ("x-shopify-topic", "orders/create"),
                ("x-shopify-webhook-id", "sh-1"),
            ],
            false,
        ),
        p(
            "/x/gitlab",
            "gitlab",
            "gl-token",
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-event-uuid", "gl-1"),
            ],
            false,
        ),
        p(
            "/x/linear",
            "linear",
            "lin",
            &[("linear-event", "Issue"), ("linear-delivery", "lin-1")],
            true,
        ),
        Provider {
            content_type: "application/x-www-form-urlencoded",
            ..p(
                "/x/twilio",
                "twilio",
                "twilio-token",
                &[("i-twilio-idempotency-token", "tw-1")],
                false,
            )
        },
        Provider {
            sign_secret: ED_SEED,
            ..p("/x/discord", "discord", ED_PUBLIC, &[], true)
        },
        p("/x/jwt", "jwt", "jwt-secret", &[], false),
    ]
}

fn body(p: &Provider, ts: i64) -> Vec<u8> {
    let json = match p.scheme {
        "stripe" => serde_json::json!({"id": "evt_1", "type": "payment_intent.succeeded"}),
        "standard" => serde_json::json!({"type": "user.created"}),
        "slack" => serde_json::json!({"type": "event_callback", "event_id": "Ev1"}),
        "linear" => {
            serde_json::json!({"action": "create", "type": "Issue", "webhookTimestamp": ts * 1000})
        }
        "discord" => serde_json::json!({"type": 2, "id": "int-1"}),
        "jwt" => serde_json::json!({"id": "jwt-1"}),
        "twilio" => return b"CallSid=CA1&CallStatus=completed".to_vec(),
        _ => serde_json::json!({"any": "thing"}),
    };
    json.to_string().into_bytes()
}

fn app(clock: &ManualClock, seen: &Seen) -> Harness {
    let mut builder = hooksmith::App::builder()
        .ignore_env()
        .clock(clock.clone())
        .state(seen.clone())
        .public_url("https://hooks.example.com")
        .admin_token(ADMIN_TOKEN);
    for (var, p) in [
        ("GITHUB_WEBHOOK_SECRET", "/x/github"),
        ("STRIPE_WEBHOOK_SECRET", "/x/stripe"),
        ("STANDARD_WEBHOOK_SECRET", "/x/standard"),
        ("SLACK_SIGNING_SECRET", "/x/slack"),
        ("SHOPIFY_WEBHOOK_SECRET", "/x/shopify"),
        ("GITLAB_WEBHOOK_TOKEN", "/x/gitlab"),
        ("LINEAR_WEBHOOK_SECRET", "/x/linear"),
        ("TWILIO_AUTH_TOKEN", "/x/twilio"),
        ("DISCORD_PUBLIC_KEY", "/x/discord"),
        ("HOOKSMITH_SECRET_X_JWT", "/x/jwt"),
    ] {
        let provider = providers().into_iter().find(|x| x.path == p).unwrap();
        builder = builder.var(var, provider.verify_secret);
    }
    Harness::new(builder.build().expect("app builds"))
}

async fn send(h: &Harness, p: &Provider, body: &[u8], signed_at: i64) -> u16 {
    let url = format!("https://hooks.example.com{}", p.path);
    let input = SignInput {
        body,
        timestamp: signed_at,
        id: "msg-1",
        url: &url,
        content_type: Some(p.content_type),
    };
    let signature = sign(p.scheme, &Params::default(), p.sign_secret, &input).unwrap();
    let mut headers: Vec<(&str, String)> = p.event_headers.clone();
    let names: Vec<String> = signature
        .iter()
        .map(|(n, _)| n.as_str().to_owned())
        .collect();
    for ((_, value), name) in signature.iter().zip(&names) {
        headers.push((name.as_str(), value.to_str().unwrap().to_owned()));
    }
    headers.push(("content-type", p.content_type.to_owned()));
    h.request("POST", p.path, &headers, body.to_vec())
        .await
        .status
}

#[tokio::test]
async fn every_scheme_is_verified_stored_and_routed_to_its_handler() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    for p in providers() {
        let status = send(&h, &p, &body(&p, NOW), NOW).await;
        let expected = if p.scheme == "discord" { 200 } else { 204 };
        assert_eq!(status, expected, "{}", p.scheme);
    }
    let expected = [
        "github push gh-1",
        "stripe payment_intent.succeeded evt_1",
        "standard user.created msg-1",
        "slack event_callback Ev1",
        "shopify orders/create sh-1",
        "gitlab Push Hook gl-1",
        "linear Issue lin-1",
        "twilio CA1 tw-1",
        "discord 2 int-1",
        "jwt jwt-1",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut got = seen.all();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Each was stored with its provider's event and id.
    let stripe = h
        .wait_for_status("/x/stripe", "evt_1", "acknowledged")
        .await;
    assert_eq!(stripe["event"], "payment_intent.succeeded");
    assert_eq!(handler(&stripe, "on_stripe")["attempts"], 1);
}

#[tokio::test]
async fn a_wrong_signature_is_401_for_every_scheme() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    for p in providers() {
        let wrong = Provider {
            sign_secret: if p.scheme == "discord" {
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
            } else if p.scheme == "standard" {
                "whsec_NfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else {
                "not the secret"
            },
            ..p
        };
        assert_eq!(
            send(&h, &wrong, &body(&wrong, NOW), NOW).await,
            401,
            "{}",
            wrong.scheme
        );
    }
    assert!(seen.all().is_empty());
}

#[tokio::test]
async fn signed_timestamps_are_checked_against_the_window_both_ways() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    for p in providers().into_iter().filter(|p| p.timestamped) {
        for (offset, expected) in [
            (TOLERANCE - 1, true),
            (-(TOLERANCE - 1), true),
            (TOLERANCE + 1, false),
            (-(TOLERANCE + 1), false),
        ] {
            let signed_at = NOW + offset;
            // Each attempt is a distinct delivery, so de-duplication does not hide the answer.
            let mut body = body(&p, signed_at);
            if p.scheme != "twilio" {
                let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                json["nonce"] = offset.into();
                json["id"] = format!("evt_{offset}").into();
                json["event_id"] = format!("Ev{offset}").into();
                body = json.to_string().into_bytes();
            }
            let status = send(&h, &p, &body, signed_at).await;
            let ok = if p.scheme == "discord" { 200 } else { 204 };
            assert_eq!(
                status,
                if expected { ok } else { 409 },
                "{} signed {offset:+} s from now",
                p.scheme
            );
        }
    }
}

#[tokio::test]
async fn slack_url_verification_is_answered_and_not_stored() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    let slack = providers()
        .into_iter()
        .find(|p| p.scheme == "slack")
        .unwrap();
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let input = SignInput {
        body,
        timestamp: NOW,
        id: "",
        url: "",
        content_type: None,
    };
    let signature = sign("slack", &Params::default(), slack.sign_secret, &input).unwrap();
    let headers: Vec<(&str, String)> = signature
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap().to_owned()))
        .collect();
    let reply = h.request("POST", "/x/slack", &headers, body.to_vec()).await;
    assert_eq!(reply.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert!(h.deliveries("/x/slack").await.is_empty());
    // Unsigned, the challenge is refused like anything else.
    assert_eq!(
        h.request("POST", "/x/slack", &[], body.to_vec())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn discord_ping_is_answered_and_not_stored() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    let body = br#"{"type":1,"id":"ping-1"}"#;
    let input = SignInput {
        body,
        timestamp: NOW,
        id: "",
        url: "",
        content_type: None,
    };
    let signature = sign("discord", &Params::default(), ED_SEED, &input).unwrap();
    let headers: Vec<(&str, String)> = signature
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap().to_owned()))
        .collect();
    let reply = h
        .request("POST", "/x/discord", &headers, body.to_vec())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        serde_json::json!({"type": 1})
    );
    assert!(h.deliveries("/x/discord").await.is_empty());
}

#[tokio::test]
async fn repeated_single_valued_signature_headers_are_401() {
    let (clock, seen) = (ManualClock::at_secs(NOW), Seen::default());
    let h = app(&clock, &seen);
    let stripe = providers()
        .into_iter()
        .find(|p| p.scheme == "stripe")
        .unwrap();
    let body = body(&stripe, NOW);
    let input = SignInput {
        body: &body,
        timestamp: NOW,
        id: "",
        url: "",
        content_type: None,
    };
    let signature = sign("stripe", &Params::default(), stripe.sign_secret, &input).unwrap();
    let value = signature[0].1.to_str().unwrap().to_owned();
    let headers = [
        ("stripe-signature", value.clone()),
        ("stripe-signature", value),
    ];
    assert_eq!(
        h.request("POST", "/x/stripe", &headers, body.clone())
            .await
            .status,
        401
    );
}
