//! Every scheme: published vectors (or, where a provider publishes none, vectors computed with
//! OpenSSL from its documented algorithm), rotation, downgrade, malformed headers, and property
//! tests that `verify(sign(x))` holds and that any single change to the secret, the body or a
//! signed header value fails.

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_614_265_330;

struct Case<'a> {
    scheme: &'a str,
    params: Params<'a>,
    secrets: &'a [&'a str],
    headers: Vec<(&'a str, String)>,
    body: &'a [u8],
    uri: &'a str,
    public_url: Option<&'a str>,
}

impl<'a> Case<'a> {
    fn new(
        scheme: &'a str,
        secrets: &'a [&'a str],
        body: &'a [u8],
        headers: &[(&'a str, &str)],
    ) -> Self {
        Case {
            scheme,
            params: Params::default(),
            secrets,
            headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            body,
            uri: "/hooks",
            public_url: None,
        }
    }

    fn verify(&self) -> Result<Verified, SignatureError> {
        let scheme = lookup(self.scheme).unwrap();
        let secrets: Vec<Secret> = self.secrets.iter().map(|s| Secret::new(*s)).collect();
        let verifier = (scheme.build)(&self.params, &secrets).unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let uri: Uri = self.uri.parse().unwrap();
        verifier.verify(&SignedRequest {
            headers: &map,
            body: self.body,
            uri: &uri,
            public_url: self.public_url,
            now_secs: NOW,
        })
    }
}

fn ok(case: &Case<'_>) -> Verified {
    case.verify()
        .unwrap_or_else(|e| panic!("{}: {e}", case.scheme))
}

// ---------------------------------------------------------------- published and computed vectors

const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_published_vector() {
    // docs.github.com, "Validating webhook deliveries".
    let secrets = ["It's a Secret to Everybody"];
    ok(&Case::new(
        "github",
        &secrets,
        b"Hello, World!",
        &[("x-hub-signature-256", GITHUB_SIG)],
    ));
    let upper = GITHUB_SIG.to_uppercase().replace("SHA256=", "sha256=");
    ok(&Case::new(
        "github",
        &secrets,
        b"Hello, World!",
        &[("x-hub-signature-256", &upper)],
    ));
}

const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
const STRIPE_V1: &str = "f60156f07d9fcede64d2d4c42b7e1f12f459a2e0c0c293d0bd7f817fbc59ecf6";

#[test]
fn stripe_vector_and_its_timestamp() {
    // printf '1614265330.%s' "$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
    let header = format!("t=1614265330,v1={STRIPE_V1}");
    let verified = ok(&Case::new(
        "stripe",
        &["whsec_test_secret"],
        STRIPE_BODY,
        &[("stripe-signature", &header)],
    ));
    assert_eq!(verified.timestamp, Some(1_614_265_330));
}

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STANDARD_V1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn standard_headers(family: &str, signature: &str) -> Vec<(&'static str, String)> {
    let name = |n: &str| -> &'static str { Box::leak(format!("{family}-{n}").into_boxed_str()) };
    vec![
        (name("id"), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
        (name("timestamp"), "1614265330".into()),
        (name("signature"), signature.to_owned()),
    ]
}

#[test]
fn standard_webhooks_published_vector_with_both_header_families() {
    // The Standard Webhooks specification's example.
    for family in ["webhook", "svix"] {
        let mut case = Case::new("standard", &[STANDARD_SECRET], STANDARD_BODY, &[]);
        case.headers = standard_headers(family, STANDARD_V1);
        assert_eq!(ok(&case).timestamp, Some(1_614_265_330));
        // Several signatures, space-separated, one of them right.
        case.headers = standard_headers(family, &format!("v1,bm90IGl0 {STANDARD_V1} v2,whatever"));
        ok(&case);
    }
}

/// RFC 8032's first test key: seed 9d61b1…7f60, public key d75a98…511a.
const ED_SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED_PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ED_PUBLIC_WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

#[test]
fn standard_webhooks_v1a_ed25519_vector() {
    // openssl pkeyutl -sign -rawin over "msg_1.1614265330.{body}" with RFC 8032's key.
    let signature = "v1a,22YVRsWKuhJezanrvfPP7FKRzdjdFHEh/ufOifyJbLIIEzIMQzOxCWzanGh/rF2kMjIekCNhj7cdRZcX1xQhBQ==";
    let body = br#"{"type":"user.created"}"#;
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", signature),
    ];
    ok(&Case::new("standard", &[ED_PUBLIC_WHPK], body, &headers));
    // A v1a entry is ignored when only a symmetric secret is configured.
    assert_eq!(
        Case::new("standard", &[STANDARD_SECRET], body, &headers).verify(),
        Err(SignatureError::Mismatch)
    );
}

const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

#[test]
fn slack_published_vector() {
    // api.slack.com, "Verifying requests from Slack".
    let headers = [
        ("x-slack-request-timestamp", "1531420618"),
        (
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ];
    let verified = ok(&Case::new(
        "slack",
        &["8f742231b10e8888abcd99yyyzzz85a5"],
        SLACK_BODY,
        &headers,
    ));
    assert_eq!(verified.timestamp, Some(1_531_420_618));
}

#[test]
fn shopify_vector() {
    // printf '{"id":1}' | openssl dgst -sha256 -hmac shop-secret -binary | base64
    let headers = [(
        "x-shopify-hmac-sha256",
        "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=",
    )];
    ok(&Case::new(
        "shopify",
        &["shop-secret"],
        br#"{"id":1}"#,
        &headers,
    ));
}

/// A header digest is decoded at its algorithm's exact length: shorter, longer, odd-length or
/// outside the alphabet is malformed (401 either way, but logged apart from a wrong secret), and
/// a digest of the right length that does not match is a mismatch.
#[test]
fn header_digests_are_decoded_at_their_exact_length() {
    use SignatureError::{Malformed, Mismatch};
    let body = br#"{"id":1}"#;
    let check = |scheme: &str, header: &str, value: &str| {
        Case::new(scheme, &["shop-secret"], body, &[(header, value)]).verify()
    };
    let good = "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=";
    assert!(check("shopify", "x-shopify-hmac-sha256", good).is_ok());
    let base64 = [
        ("", SignatureError::Missing),
        ("plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwt", Malformed),
        (&format!("{good}{good}"), Malformed),
        (&"A".repeat(200), Malformed),
        ("plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ!=", Malformed),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Mismatch),
    ];
    for (value, expected) in base64 {
        assert_eq!(
            check("shopify", "x-shopify-hmac-sha256", value),
            Err(expected),
            "{value:?}"
        );
    }
    let hex_good =
        hex::encode(hmac::Keyed::new(hmac::Algorithm::Sha256, b"shop-secret").compute(&[body]));
    assert!(
        check(
            "github",
            "x-hub-signature-256",
            &format!("sha256={hex_good}")
        )
        .is_ok()
    );
    let hex = [
        (format!("sha256={}", &hex_good[..62]), Malformed),
        (format!("sha256={hex_good}00"), Malformed),
        (format!("sha256={}", &hex_good[..63]), Malformed),
        (format!("sha256={}", "g".repeat(64)), Malformed),
        (format!("sha256={}", "0".repeat(200)), Malformed),
        (format!("sha256={}", "0".repeat(64)), Mismatch),
    ];
    for (value, expected) in hex {
        assert_eq!(
            check("github", "x-hub-signature-256", &value),
            Err(expected),
            "{value:?}"
        );
    }
}

#[test]
fn gitlab_token_compares_the_whole_token() {
    ok(&Case::new(
        "gitlab",
        &["glpat-token"],
        b"{}",
        &[("x-gitlab-token", "glpat-token")],
    ));
    for wrong in ["glpat-toke", "glpat-token2", "GLPAT-TOKEN"] {
        let case = Case::new(
            "gitlab",
            &["glpat-token"],
            b"{}",
            &[("x-gitlab-token", wrong)],
        );
        assert_eq!(case.verify(), Err(SignatureError::Mismatch), "{wrong}");
    }
}

#[test]
fn linear_vector_and_its_body_timestamp() {
    // printf '%s' "$BODY" | openssl dgst -sha256 -hmac lin_wh_secret
    let body = br#"{"action":"create","type":"Issue","webhookTimestamp":1614265330123}"#;
    let headers = [(
        "linear-signature",
        "a0a758334fcc4d4f824ea62f365edad4215f7e5e90b839b06b6f4ccd81a25ca5",
    )];
    assert_eq!(
        ok(&Case::new("linear", &["lin_wh_secret"], body, &headers)).timestamp,
        Some(1_614_265_330)
    );
}

#[test]
fn twilio_published_vector() {
    // twilio.com/docs/usage/security: token 12345, the documented URL and parameters.
    let body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    let headers = [
        ("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", "mycompany.com"),
    ];
    let mut case = Case::new("twilio", &["12345"], body, &headers);
    case.uri = "/myapp.php?foo=1&bar=2";
    ok(&case);
    // Behind a proxy, the configured public URL is what counts.
    case.headers[2].1 = "internal:8080".into();
    assert_eq!(case.verify(), Err(SignatureError::Mismatch));
    case.public_url = Some("https://mycompany.com");
    ok(&case);
    // Twilio's libraries also accept the URL with its default port.
    case.public_url = Some("https://mycompany.com:443");
    ok(&case);
}

#[test]
fn discord_ed25519_vector() {
    // openssl pkeyutl -sign -rawin over "1614265330" + body with RFC 8032's key.
    let body = br#"{"type":2,"id":"int_1"}"#;
    let signature = "ea38eb52cb26d8f6893a359982215689b94a01d9a787700ca007ae42a14351a1637f77293ea4d51835a3521ba3cfa19ab19c8e725781b5d93ab0dba1277adb07";
    let headers = [
        ("x-signature-timestamp", "1614265330"),
        ("x-signature-ed25519", signature),
    ];
    assert_eq!(
        ok(&Case::new("discord", &[ED_PUBLIC_HEX], body, &headers)).timestamp,
        Some(1_614_265_330)
    );
    let tampered = br#"{"type":2,"id":"int_2"}"#;
    assert_eq!(
        Case::new("discord", &[ED_PUBLIC_HEX], tampered, &headers).verify(),
        Err(SignatureError::Mismatch)
    );
}

#[cfg(feature = "jwt")]
mod jwt {
    use super::*;

    /// jwt.io's example token (HS256, secret `your-256-bit-secret`, no `exp`).
    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const PUBLIC_PEM: &str = include_str!("testdata/jwt-test-rsa-public.pem");
    const PRIVATE_PEM: &str = include_str!("testdata/jwt-test-rsa-private.pem");

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn published_hs256_token_verifies() {
        ok(&Case::new(
            "jwt",
            &["your-256-bit-secret"],
            b"{}",
            &[("authorization", &bearer(JWT_IO))],
        ));
        let wrong = Case::new(
            "jwt",
            &["your-256-bit-secreT"],
            b"{}",
            &[("authorization", &bearer(JWT_IO))],
        );
        assert_eq!(wrong.verify(), Err(SignatureError::Mismatch));
    }

    fn token(
        header: jsonwebtoken::Header,
        claims: &serde_json::Value,
        key: &jsonwebtoken::EncodingKey,
    ) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn an_rsa_key_accepts_rs256_and_refuses_hs256_made_with_the_public_key() {
        let claims = serde_json::json!({"sub": "webhook", "exp": NOW + 60});
        let rs = token(
            jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap(),
        );
        ok(&Case::new(
            "jwt",
            &[PUBLIC_PEM],
            b"{}",
            &[("authorization", &bearer(&rs))],
        ));
        // The classic confusion attack: HMAC keyed with the public key's PEM text.
        let forged = token(
            jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(PUBLIC_PEM.as_bytes()),
        );
        let case = Case::new(
            "jwt",
            &[PUBLIC_PEM],
            b"{}",
            &[("authorization", &bearer(&forged))],
        );
        assert_eq!(case.verify(), Err(SignatureError::Mismatch));
    }

    #[test]
    fn alg_none_is_never_accepted() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(br#"{"sub":"x"}"#)
        );
        let case = Case::new(
            "jwt",
            &["your-256-bit-secret"],
            b"{}",
            &[("authorization", &bearer(&unsigned))],
        );
        assert!(case.verify().is_err());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        use SignatureError::*;
        let check = |value: &str| {
            Case::new(
                "jwt",
                &["your-256-bit-secret"],
                b"{}",
                &[("authorization", value)],
            )
            .verify()
        };
        assert_eq!(check(JWT_IO), Err(Malformed), "no Bearer prefix");
        assert_eq!(check("Basic dXNlcjpwYXNz"), Err(Malformed));
        assert_eq!(check("Bearer "), Err(Malformed));
        assert_eq!(check("Bearer not.a.jwt"), Err(Malformed));
        assert_eq!(
            check(&bearer(&JWT_IO[..JWT_IO.len() - 10])),
            Err(Mismatch),
            "a truncated signature"
        );
        assert_eq!(Case::new("jwt", &["s"], b"{}", &[]).verify(), Err(Missing));
    }

    #[test]
    fn exp_and_nbf_hold_with_a_small_leeway() {
        let key = jsonwebtoken::EncodingKey::from_secret(b"s");
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let at = |claims: serde_json::Value| {
            let value = bearer(&token(header.clone(), &claims, &key));
            Case::new("jwt", &["s"], b"{}", &[("authorization", value.as_str())])
                .verify()
                .map(drop)
        };
        assert_eq!(at(serde_json::json!({"exp": NOW - 29})), Ok(()));
        assert_eq!(
            at(serde_json::json!({"exp": NOW - 31})),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(at(serde_json::json!({"nbf": NOW + 29})), Ok(()));
        assert_eq!(
            at(serde_json::json!({"nbf": NOW + 31})),
            Err(SignatureError::Mismatch)
        );
    }
}

// ------------------------------------------------------------------------------------- rotation

#[test]
fn every_scheme_accepts_any_of_its_secrets() {
    for spec in specs() {
        let (headers, body) = spec.signed(b"{\"webhookTimestamp\":1614265330000}");
        let mut case = spec.case(&body, headers);
        // A secret of the same form that did not sign, then the one that did.
        let other = if spec.asymmetric {
            ED_PUBLIC_HEX_OR_WHPK_OTHER[spec.other].to_owned()
        } else {
            let at = spec.verify_secret.find('_').map_or(0, |i| i + 1);
            let mut other = spec.verify_secret.to_owned();
            let changed = mutate(other[at..].chars().next().unwrap()).unwrap();
            other.replace_range(at..=at, &changed.to_string());
            other
        };
        let keys = [other.as_str(), spec.verify_secret];
        case.secrets = &keys;
        ok(&case);
        case.secrets = &keys[..1];
        assert!(
            case.verify().is_err(),
            "{} verified with the wrong secret alone",
            spec.scheme
        );
    }
}

/// Valid public keys that did not sign: RFC 8032's second test key, in hex and as `whpk_`.
const ED_PUBLIC_HEX_OR_WHPK_OTHER: [&str; 2] = [
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=",
];

// ------------------------------------------------------------------------------------ downgrade

#[test]
fn only_the_configured_scheme_counts() {
    let secrets = ["It's a Secret to Everybody"];
    // GitHub's legacy SHA-1 header, valid for this body, does not stand in for the SHA-256 one.
    let sha1 = [(
        "x-hub-signature",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
    )];
    assert_eq!(
        Case::new("github", &secrets, b"Hello, World!", &sha1).verify(),
        Err(SignatureError::Missing)
    );
    // A wrong SHA-256 header is not rescued by a right SHA-1 one.
    let both = [
        ("x-hub-signature", sha1[0].1),
        ("x-hub-signature-256", "sha256=00"),
    ];
    assert!(
        Case::new("github", &secrets, b"Hello, World!", &both)
            .verify()
            .is_err()
    );
    // Stripe: v0 never counts.
    let v0 = format!("t=1614265330,v0={STRIPE_V1}");
    let case = Case::new(
        "stripe",
        &["whsec_test_secret"],
        STRIPE_BODY,
        &[("stripe-signature", &v0)],
    );
    assert_eq!(case.verify(), Err(SignatureError::Malformed));
    // Standard: a present but wrong `webhook-signature` does not fall back to `svix-*`.
    let mut case = Case::new("standard", &[STANDARD_SECRET], STANDARD_BODY, &[]);
    case.headers = standard_headers("svix", STANDARD_V1);
    case.headers.push(("webhook-signature", "v1,AAAA".into()));
    assert!(case.verify().is_err());
}

// ----------------------------------------------------------------------------- malformed headers

#[test]
fn malformed_headers_are_refused_with_a_reason() {
    use SignatureError::*;
    let s = &["whsec_test_secret"][..];
    let stripe = |v: &str| {
        Case::new("stripe", s, STRIPE_BODY, &[("stripe-signature", v)])
            .verify()
            .map(drop)
    };
    let v1 = format!("v1={STRIPE_V1}");
    for (header, expected) in [
        ("", Missing),
        ("t=1614265330", Malformed),
        (v1.as_str(), Malformed),
        ("t=,v1=00", Malformed),
        ("t=1614265330,v1=", Malformed),
        ("t=1614265330,v1=zz", Malformed),
        ("t=1614265330,v1=f60156f0", Malformed),
        ("garbage", Malformed),
    ] {
        assert_eq!(stripe(header), Err(expected), "{header:?}");
    }
    for bad_t in [
        "-1614265330",
        "+1614265330",
        "1614265330.5",
        "1e9",
        "99999999999999999999",
        "-9223372036854775808",
        "0x10",
        " ",
    ] {
        assert_eq!(
            stripe(&format!("t={bad_t},{v1}")),
            Err(Malformed),
            "{bad_t:?}"
        );
    }
    assert_eq!(
        stripe(&format!("t=1614265330,t=1614265330,{v1}")),
        Err(Malformed),
        "two timestamps"
    );
    // An unreadable v1 beside a good one is skipped.
    assert_eq!(stripe(&format!("t=1614265330,v1=nothex,{v1}")), Ok(()));

    let standard = |id: &str, ts: &str, sig: &str| {
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ];
        Case::new("standard", &[STANDARD_SECRET], STANDARD_BODY, &headers)
            .verify()
            .map(drop)
    };
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    // svix shipped a bug where `v1,` verified everything: an empty signature is never valid.
    for (sig, expected) in [
        ("v1,", Malformed),
        ("v1", Malformed),
        ("v1,!!!!", Malformed),
        ("v1,AAAA", Mismatch),
        ("", Missing),
    ] {
        assert_eq!(standard(id, "1614265330", sig), Err(expected), "{sig:?}");
    }
    assert_eq!(standard(id, "1614265330.0", STANDARD_V1), Err(Malformed));
    assert_eq!(standard(id, "", STANDARD_V1), Err(Missing));
    assert_eq!(
        standard("msg_other", "1614265330", STANDARD_V1),
        Err(Mismatch)
    );
    let twice = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-timestamp", "1614265331"),
        ("webhook-signature", STANDARD_V1),
    ];
    let case = Case::new("standard", &[STANDARD_SECRET], STANDARD_BODY, &twice);
    assert_eq!(
        case.verify(),
        Err(Repeated),
        "two timestamps are refused, not one of them chosen"
    );

    let slack = |ts: &str, sig: &str| {
        let headers = [
            ("x-slack-request-timestamp", ts),
            ("x-slack-signature", sig),
        ];
        Case::new(
            "slack",
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            SLACK_BODY,
            &headers,
        )
        .verify()
        .map(drop)
    };
    let good = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    for (ts, sig, expected) in [
        ("1531420618", "v0=", Malformed),
        ("1531420618", "v1=a2114d57", Malformed),
        ("1531420618", &good[3..], Malformed),
        ("1531420619", good, Mismatch),
        ("abc", good, Malformed),
        ("", good, Missing),
    ] {
        assert_eq!(slack(ts, sig), Err(expected), "{ts:?} {sig:?}");
    }

    let discord = |ts: &str, sig: &str| {
        let headers = [("x-signature-timestamp", ts), ("x-signature-ed25519", sig)];
        Case::new("discord", &[ED_PUBLIC_HEX], b"{}", &headers)
            .verify()
            .map(drop)
    };
    assert_eq!(discord("1614265330", "00"), Err(Malformed));
    assert_eq!(discord("1614265330", &"0".repeat(128)), Err(Mismatch));
    assert_eq!(discord("x", &"0".repeat(128)), Err(Malformed));

    let twilio = |sig: &str| {
        let headers = [("x-twilio-signature", sig), ("host", "a.com")];
        Case::new("twilio", &["12345"], b"{}", &headers)
            .verify()
            .map(drop)
    };
    assert_eq!(twilio("not base64!"), Err(Malformed));
    assert_eq!(twilio("AAAA"), Err(Malformed), "a truncated digest");
    assert_eq!(
        twilio("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Err(Malformed),
        "a JSON body needs bodySHA256"
    );

    let shopify = |sig: &str| {
        Case::new("shopify", &["k"], b"{}", &[("x-shopify-hmac-sha256", sig)])
            .verify()
            .map(drop)
    };
    assert_eq!(
        shopify("plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0"),
        Err(Malformed),
        "unpadded"
    );
    assert_eq!(
        shopify("sha256=plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0="),
        Err(Malformed)
    );

    let linear = |body: &'static [u8]| {
        let tag = hex::encode(hmac::Keyed::new(hmac::Algorithm::Sha256, b"k").compute(&[body]));
        Case::new("linear", &["k"], body, &[("linear-signature", &tag)])
            .verify()
            .map(drop)
    };
    assert_eq!(
        linear(br#"{"type":"Issue"}"#),
        Err(Malformed),
        "no webhookTimestamp"
    );
    assert_eq!(linear(br#"{"webhookTimestamp":"soon"}"#), Err(Malformed));
    assert_eq!(linear(br#"{"webhookTimestamp":1614265330000}"#), Ok(()));

    let repeated = [
        ("x-hub-signature-256", GITHUB_SIG),
        ("x-hub-signature-256", GITHUB_SIG),
    ];
    let case = Case::new(
        "github",
        &["It's a Secret to Everybody"],
        b"Hello, World!",
        &repeated,
    );
    assert_eq!(case.verify(), Err(Repeated));
}

#[test]
fn secrets_are_checked_at_startup_without_echoing_them() {
    let standard = lookup("standard").unwrap();
    assert!((standard.check_secret)(STANDARD_SECRET).is_ok());
    let error = (standard.check_secret)("whsec_not*base64").unwrap_err();
    assert!(!error.contains("not*base64"), "{error}");
    assert!((standard.check_secret)("whsec_").is_err());
    assert!((standard.check_secret)("whpk_AAAA").is_err());
    let discord = lookup("discord").unwrap();
    assert!((discord.check_secret)(ED_PUBLIC_HEX).is_ok());
    assert!((discord.check_secret)("d75a98").is_err());
}

#[test]
fn every_implemented_scheme_is_a_name_the_macro_accepts() {
    for scheme in SCHEMES {
        assert!(
            hooksmith_grammar::SCHEMES.contains(&scheme.name),
            "{}",
            scheme.name
        );
    }
    for name in hooksmith_grammar::SCHEMES {
        assert!(
            lookup(name).is_ok(),
            "`{name}` is accepted by the macro but not implemented"
        );
    }
    assert!(
        lookup("gihtub")
            .unwrap_err()
            .contains("unknown signature scheme `gihtub`")
    );
}

#[test]
fn secrets_never_print() {
    assert_eq!(
        format!("{:?}", Secret::new("hunter2")),
        "Secret(<redacted>)"
    );
}

// ---------------------------------------------------------------------------- property tests

/// A scheme as the property tests drive it.
struct Spec {
    scheme: &'static str,
    params: Params<'static>,
    sign_secret: &'static str,
    verify_secret: &'static str,
    asymmetric: bool,
    /// Index into [`ED_PUBLIC_HEX_OR_WHPK_OTHER`] for asymmetric schemes.
    other: usize,
    /// Whether the signature covers the body (a bare token or JWT does not).
    binds_body: bool,
}

fn specs() -> Vec<Spec> {
    let spec = |scheme, sign_secret, verify_secret| Spec {
        scheme,
        params: Params::default(),
        sign_secret,
        verify_secret,
        asymmetric: false,
        other: 0,
        binds_body: true,
    };
    let mut all = vec![
        spec("github", "gh-secret", "gh-secret"),
        spec("stripe", "whsec_stripe", "whsec_stripe"),
        spec("standard", STANDARD_SECRET, STANDARD_SECRET),
        spec("slack", "slack-secret", "slack-secret"),
        spec("shopify", "shop-secret", "shop-secret"),
        spec("linear", "lin-secret", "lin-secret"),
        spec("twilio", "twilio-token", "twilio-token"),
        spec("hmac-sha256", "generic", "generic"),
        spec("hmac-sha1", "generic", "generic"),
        Spec {
            binds_body: false,
            ..spec("gitlab", "gl-token", "gl-token")
        },
        Spec {
            asymmetric: true,
            ..spec("discord", ED_SEED_HEX, ED_PUBLIC_HEX)
        },
        Spec {
            asymmetric: true,
            other: 1,
            ..spec(
                "standard",
                "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
                ED_PUBLIC_WHPK,
            )
        },
        Spec {
            params: Params {
                header: Some("X-Custom-Sig"),
                prefix: Some("v="),
                encoding: Some(Encoding::Base64),
            },
            ..spec("hmac-sha1", "custom", "custom")
        },
    ];
    if cfg!(feature = "jwt") {
        all.push(Spec {
            binds_body: false,
            ..spec("jwt", "jwt-secret", "jwt-secret")
        });
    }
    all
}

impl Spec {
    fn url(&self, body: &[u8]) -> String {
        use sha2::Digest as _;
        format!(
            "https://example.com/hooks?bodySHA256={}",
            hex::encode(sha2::Sha256::digest(body))
        )
    }

    fn signed(&self, body: &[u8]) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let url = self.url(body);
        let input = SignInput {
            body,
            timestamp: NOW,
            id: "msg_1",
            url: &url,
            content_type: None,
        };
        let headers = sign(self.scheme, &self.params, self.sign_secret, &input).unwrap();
        let headers = headers
            .into_iter()
            .map(|(n, v)| {
                (
                    &*Box::leak(n.as_str().to_owned().into_boxed_str()),
                    v.to_str().unwrap().to_owned(),
                )
            })
            .collect();
        (headers, body.to_vec())
    }

    fn case<'a>(&'a self, body: &'a [u8], headers: Vec<(&'a str, String)>) -> Case<'a> {
        let uri: &'static str = Box::leak(
            self.url(body)
                .replace("https://example.com", "")
                .into_boxed_str(),
        );
        Case {
            scheme: self.scheme,
            params: self.params,
            secrets: std::slice::from_ref(&self.verify_secret),
            headers,
            body,
            uri,
            public_url: Some("https://example.com"),
        }
    }
}

/// The same character class, another value: digits and letters move to the next one.
fn mutate(c: char) -> Option<char> {
    Some(match c {
        '9' => '0',
        'z' => 'a',
        'Z' => 'A',
        c if c.is_ascii_alphanumeric() => char::from(c as u8 + 1),
        _ => return None,
    })
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    "[ -~]{0,64}".prop_map(|text| {
        serde_json::json!({ "webhookTimestamp": NOW * 1000, "text": text })
            .to_string()
            .into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn verify_of_sign_holds(body in body_strategy()) {
        for spec in specs() {
            let (headers, body) = spec.signed(&body);
            prop_assert!(spec.case(&body, headers).verify().is_ok(), "{}", spec.scheme);
        }
    }

    #[test]
    fn any_change_to_the_body_fails(body in body_strategy(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        for spec in specs().into_iter().filter(|s| s.binds_body) {
            let (headers, mut changed) = spec.signed(&body);
            let i = at.index(changed.len());
            changed[i] ^= 1 << bit;
            let mut case = spec.case(&body, headers);
            case.body = &changed;
            prop_assert!(case.verify().is_err(), "{} accepted a changed body", spec.scheme);
        }
    }

    #[test]
    fn any_change_to_a_signed_header_fails(body in body_strategy(), which in any::<prop::sample::Index>(), at in any::<prop::sample::Index>()) {
        for spec in specs() {
            let (headers, body) = spec.signed(&body);
            let h = which.index(headers.len());
            let value = &headers[h].1;
            let positions: Vec<usize> = value.char_indices().filter(|(_, c)| mutate(*c).is_some()).map(|(i, _)| i).collect();
            let i = positions[at.index(positions.len())];
            let mut changed = value.clone();
            let replacement = mutate(value[i..].chars().next().unwrap()).unwrap();
            changed.replace_range(i..=i, &replacement.to_string());
            let mut headers = headers.clone();
            headers[h].1 = changed.clone();
            prop_assert!(spec.case(&body, headers).verify().is_err(), "{}: {} = {changed}", spec.scheme, spec.scheme);
        }
    }

    #[test]
    fn any_change_to_the_secret_fails(body in body_strategy(), at in any::<prop::sample::Index>()) {
        for spec in specs().into_iter().filter(|s| !s.asymmetric) {
            let (headers, body) = spec.signed(&body);
            let positions: Vec<usize> = spec.verify_secret.char_indices().filter(|(_, c)| mutate(*c).is_some()).map(|(i, _)| i).collect();
            let i = positions[at.index(positions.len())];
            let mut secret = spec.verify_secret.to_owned();
            secret.replace_range(i..=i, &mutate(spec.verify_secret[i..].chars().next().unwrap()).unwrap().to_string());
            let secret: &'static str = Box::leak(secret.into_boxed_str());
            let mut case = spec.case(&body, headers);
            case.secrets = std::slice::from_ref(&secret);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case.verify()));
            prop_assert!(!matches!(result, Ok(Ok(_))), "{} verified with a changed secret", spec.scheme);
        }
    }

    #[test]
    fn header_parsers_never_panic(value in "\\PC{0,80}") {
        let _ = stripe::parse(&value);
        let _ = standard::parse_signatures(&value);
        let _ = standard::decode_key(&value);
        let _ = parse_timestamp(&value);
        let _ = linear::body_timestamp(value.as_bytes());
    }
}
