//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//!
//! The legacy SHA-1 header `X-Hub-Signature` is never consulted: only the configured scheme
//! counts, so a request cannot downgrade verification by sending the weaker header.

use std::sync::Arc;

use super::hmac::{Algorithm, HmacHeader};
use super::{Defaults, Scheme};
use crate::spec::Encoding;

pub(super) const SCHEME: Scheme = Scheme {
    name: "github",
    defaults: Defaults {
        secret_env: Some("GITHUB_WEBHOOK_SECRET"),
        event_header: Some("x-github-event"),
        event_field: None,
        id_header: Some("x-github-delivery"),
        id_field: None,
        action_field: Some("action"),
        // GitHub caps payloads at 25 MB.
        max_body: Some(25 * 1024 * 1024),
        form_payload: true,
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(HmacHeader::new(
            Algorithm::Sha256,
            "x-hub-signature-256",
            "sha256=",
            Encoding::Hex,
            secrets,
        )?))
    },
};

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::super::{Params, Secret, SignatureError, SignedRequest};
    use super::*;

    fn verify(
        secrets: &[&str],
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), SignatureError> {
        let verifier = (SCHEME.build)(
            &Params::default(),
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        )
        .unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        verifier
            .verify(&SignedRequest {
                headers: &map,
                body,
                now_secs: 0,
            })
            .map(drop)
    }

    const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn published_vector_verifies() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = "It's a Secret to Everybody";
        verify(
            &[secret],
            b"Hello, World!",
            &[("x-hub-signature-256", VECTOR)],
        )
        .unwrap();
        let upper = VECTOR.to_uppercase().replace("SHA256=", "sha256=");
        verify(
            &[secret],
            b"Hello, World!",
            &[("x-hub-signature-256", &upper)],
        )
        .unwrap();
    }

    #[test]
    fn any_rotated_secret_verifies() {
        let secrets = ["new secret", "It's a Secret to Everybody"];
        verify(
            &secrets,
            b"Hello, World!",
            &[("x-hub-signature-256", VECTOR)],
        )
        .unwrap();
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        let s = ["It's a Secret to Everybody"];
        let body = b"Hello, World!";
        let cases: &[(&[(&str, &str)], SignatureError)] = &[
            (&[], SignatureError::Missing),
            (&[("x-hub-signature-256", "")], SignatureError::Missing),
            (
                &[("x-hub-signature-256", "sha256=")],
                SignatureError::Malformed,
            ),
            (
                &[(
                    "x-hub-signature-256",
                    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                )],
                SignatureError::Malformed,
            ),
            (
                &[("x-hub-signature-256", "sha256=zz")],
                SignatureError::Malformed,
            ),
            (
                &[("x-hub-signature-256", "sha256=757107ea")],
                SignatureError::Mismatch,
            ),
            (
                &[("x-hub-signature-256", &VECTOR.replace("e17", "e18"))],
                SignatureError::Mismatch,
            ),
            (
                &[
                    ("x-hub-signature-256", VECTOR),
                    ("x-hub-signature-256", VECTOR),
                ],
                SignatureError::Repeated,
            ),
            // A valid-looking legacy SHA-1 header does not stand in for the SHA-256 one.
            (
                &[(
                    "x-hub-signature",
                    "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
                )],
                SignatureError::Missing,
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(verify(&s, body, headers), Err(*expected), "{headers:?}");
        }
        assert_eq!(
            verify(&s, b"Hello, World?", &[("x-hub-signature-256", VECTOR)]),
            Err(SignatureError::Mismatch)
        );
    }
}
