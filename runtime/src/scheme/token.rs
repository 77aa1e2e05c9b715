//! GitLab: the secret token itself in `X-Gitlab-Token`, compared in constant time (both sides
//! are hashed first, so not even the length leaks); event `X-Gitlab-Event`, id
//! `X-Gitlab-Event-UUID`. A shared token proves the sender knows it, not that the body is intact:
//! use it over HTTPS only.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    Defaults, Scheme, SignatureError, SignedRequest, Verified, Verifier, header_name, header_value,
    single_header,
};

pub(super) const GITLAB: Scheme = Scheme {
    name: "gitlab",
    defaults: Defaults {
        secret_env: Some("GITLAB_WEBHOOK_TOKEN"),
        event_header: &["x-gitlab-event"],
        id_header: &["x-gitlab-event-uuid"],
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        if secrets.is_empty() {
            return Err("no secret configured".into());
        }
        let digests = secrets
            .iter()
            .map(|s| Sha256::digest(s.expose()).into())
            .collect();
        Ok(Arc::new(Token { digests }))
    },
    sign: |_, secret, _| {
        Ok(vec![(
            header_name("x-gitlab-token"),
            header_value(secret.to_owned())?,
        )])
    },
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Token {
    digests: Vec<[u8; 32]>,
}

impl Verifier for Token {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let presented: [u8; 32] =
            Sha256::digest(single_header(request.headers, "x-gitlab-token")?.as_bytes()).into();
        let matched = self.digests.iter().fold(false, |found, digest| {
            found | bool::from(digest.ct_eq(&presented))
        });
        if matched {
            Ok(Verified::default())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}
