//! What stops an app from starting, and what the message says. Each test registers its handlers
//! explicitly, so the deliberately wrong ones below never meet.

use hooksmith::{App, AppBuilder, Endpoint, SecretSource, webhook};
use hooksmith_tests::Harness;

fn builder() -> AppBuilder {
    App::builder().ignore_env().only_explicit_handlers()
}

fn error(builder: AppBuilder) -> String {
    builder
        .build()
        .expect_err("the app must not start")
        .to_string()
}

#[webhook(path = "/s/github", sig = "github")]
async fn github_hook() {}

#[webhook(path = "/s/github", sig = "github", max_body = 10)]
async fn github_small() {}

#[webhook(path = "/s/other", sig = "github", event = "push")]
async fn other_hook() {}

mod first {
    #[hooksmith::webhook(path = "/s/a", sig = "none")]
    pub(crate) async fn same_name() {}
}

mod second {
    #[hooksmith::webhook(path = "/s/b", sig = "none")]
    pub(crate) async fn same_name() {}
}

const STRIPE: Endpoint = Endpoint::new("/s/stripe").sig("stripe");
#[webhook(endpoint = STRIPE)]
async fn stripe_hook() {}

const TYPO: Endpoint = Endpoint::new("/s/typo").sig("gihtub");
#[webhook(endpoint = TYPO)]
async fn typo_hook() {}

#[webhook(path = "/s/tenants/{connection}", sig = "github")]
async fn tenant_hook() {}

#[webhook(path = "/s/open/{connection}", sig = "none")]
async fn open_tenant() {}

const NONE_WITH_SECRET: Endpoint = Endpoint::new("/s/none")
    .sig("none")
    .secrets(&[SecretSource::env("X")]);
#[webhook(endpoint = NONE_WITH_SECRET)]
async fn none_with_secret() {}

const BAD_HEADER: Endpoint = Endpoint::new("/s/generic")
    .sig("hmac-sha256")
    .header("X Sig");
#[webhook(endpoint = BAD_HEADER)]
async fn bad_header() {}

#[webhook(path = "/s/no-event", sig = "none", event = "push")]
async fn no_event_source() {}

#[test]
fn a_missing_secret_names_the_variable_the_route_and_the_way_out() {
    tokio_runtime().block_on(async {
        let message = error(builder().handler::<github_hook>());
        assert!(message.contains("`GITHUB_WEBHOOK_SECRET`"), "{message}");
        assert!(message.contains("/s/github"), "{message}");
        assert!(
            message.contains("sig = \\\"none\\\"") || message.contains("sig = \"none\""),
            "{message}"
        );
        assert!(
            message.contains("startup.rs:"),
            "names the handler's location: {message}"
        );
    });
}

#[test]
fn empty_and_padded_secrets_are_refused_without_printing_them() {
    tokio_runtime().block_on(async {
        let message = error(
            builder()
                .handler::<github_hook>()
                .var("GITHUB_WEBHOOK_SECRET", ""),
        );
        assert!(message.contains("is empty"), "{message}");
        let message = error(
            builder()
                .handler::<github_hook>()
                .var("GITHUB_WEBHOOK_SECRET", "s3cr3t-value\n"),
        );
        assert!(message.contains("whitespace"), "{message}");
        assert!(
            !message.contains("s3cr3t-value"),
            "the secret is never printed: {message}"
        );
    });
}

#[test]
fn conflicting_endpoint_settings_name_both_handlers() {
    tokio_runtime().block_on(async {
        let message = error(
            builder()
                .handler::<github_hook>()
                .handler::<github_small>()
                .var("GITHUB_WEBHOOK_SECRET", "s"),
        );
        assert!(
            message.contains("`github_hook`") && message.contains("`github_small`"),
            "{message}"
        );
        assert!(message.contains("`max_body`"), "{message}");
        assert!(
            message.contains("endpoint = NAME"),
            "says how to share settings: {message}"
        );
    });
}

#[test]
fn two_handlers_with_one_name_are_refused() {
    tokio_runtime().block_on(async {
        let message = error(
            builder()
                .handler::<first::same_name>()
                .handler::<second::same_name>(),
        );
        assert!(
            message.contains("two handlers are named `same_name`"),
            "{message}"
        );
    });
}

#[webhook(path = "/s/standard", sig = "standard")]
async fn standard_hook() {}

#[test]
fn a_secret_of_the_wrong_form_names_the_variable_not_the_value() {
    tokio_runtime().block_on(async {
        let message = error(
            builder()
                .handler::<standard_hook>()
                .var("STANDARD_WEBHOOK_SECRET", "whsec_%%%%-not-base64"),
        );
        assert!(
            message.contains("`STANDARD_WEBHOOK_SECRET`") && message.contains("/s/standard"),
            "{message}"
        );
        assert!(
            message.contains("base64"),
            "says what form is expected: {message}"
        );
        assert!(!message.contains("%%%%-not-base64"), "{message}");
    });
}

#[test]
fn unknown_schemes_list_the_known_ones() {
    tokio_runtime().block_on(async {
        assert!(
            builder()
                .handler::<stripe_hook>()
                .var("STRIPE_WEBHOOK_SECRET", "whsec_x")
                .build()
                .is_ok()
        );
        let message = error(builder().handler::<typo_hook>());
        assert!(
            message.contains("unknown signature scheme `gihtub`") && message.contains("`github`"),
            "{message}"
        );
    });
}

#[test]
fn const_endpoints_are_checked_like_attribute_keys() {
    tokio_runtime().block_on(async {
        let message = error(builder().handler::<none_with_secret>());
        assert!(
            message.contains("`sig = \"none\"` and a secret"),
            "{message}"
        );
        let message = error(
            builder()
                .handler::<bad_header>()
                .var("HOOKSMITH_SECRET_S_GENERIC", "s"),
        );
        assert!(
            message.contains("`X Sig` is not a valid header name"),
            "{message}"
        );
        let message = error(builder().handler::<no_event_source>());
        assert!(message.contains("no event source"), "{message}");
        assert!(
            builder().handler::<tenant_hook>().build().is_ok(),
            "a per-tenant endpoint needs no secret of its own"
        );
        let message = error(builder().handler::<open_tenant>());
        assert!(message.contains("per-tenant endpoint"), "{message}");
    });
}

#[test]
fn every_problem_is_reported_at_once() {
    tokio_runtime().block_on(async {
        let message = error(
            builder()
                .handler::<github_hook>()
                .handler::<stripe_hook>()
                .handler::<no_event_source>(),
        );
        assert!(message.contains("GITHUB_WEBHOOK_SECRET"), "{message}");
        assert!(message.contains("stripe"), "{message}");
        assert!(message.contains("no event source"), "{message}");
    });
}

#[test]
fn explicit_registration_mounts_only_what_it_names_and_counts_a_repeat_once() {
    tokio_runtime().block_on(async {
        let app = builder()
            .handler::<other_hook>()
            .handler::<other_hook>()
            .var("GITHUB_WEBHOOK_SECRET", "s")
            .build()
            .unwrap();
        let h = Harness::new(app);
        assert_eq!(h.request("POST", "/s/github", &[], "{}").await.status, 404);
        let reply = h
            .post_signed("/s/other", &[("x-github-event", "push".into())], b"{}")
            .await;
        assert_eq!(reply.status, 204);
    });
}

#[test]
fn development_mode_generates_missing_secrets_and_reports_them() {
    tokio_runtime().block_on(async {
        let app = builder()
            .handler::<github_hook>()
            .dev_secrets(true)
            .build()
            .unwrap();
        let generated = app.generated_secrets();
        assert_eq!(generated.len(), 1);
        assert_eq!(generated[0].0, "GITHUB_WEBHOOK_SECRET");
        assert_eq!(generated[0].1.len(), 64);
    });
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let message = builder()
        .handler::<other_hook>()
        .var("GITHUB_WEBHOOK_SECRET", "s")
        .build()
        .unwrap_err()
        .to_string();
    assert!(message.contains("Tokio runtime"), "{message}");
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
