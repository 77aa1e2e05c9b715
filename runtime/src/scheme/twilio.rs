//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, url + sorted params)>`.
//!
//! The URL is the one Twilio called: behind a proxy set the app's public URL
//! (`HOOKSMITH_PUBLIC_URL`), else it is rebuilt as `https://{Host}{path}?{query}`. As Twilio's own
//! libraries do, the URL is also tried with its default port added or removed. Form bodies sign
//! each parameter as `name` + `value`, sorted by name; JSON bodies sign the URL alone, whose
//! `bodySHA256` query parameter must then be the body's hex SHA-256.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderName, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hmac::{Algorithm, Keyed, any_matches};
use super::{
    Defaults, Params, Scheme, SignInput, SignatureError, SignedRequest, Verified, Verifier,
    header_name, header_value, single_header,
};

pub(super) const SCHEME: Scheme = Scheme {
    name: "twilio",
    defaults: Defaults {
        secret_env: Some("TWILIO_AUTH_TOKEN"),
        id_header: &["i-twilio-idempotency-token"],
        ..Defaults::NONE
    },
    needs_secret: true,
    build: |_, secrets| {
        Ok(Arc::new(Twilio {
            keys: Keyed::all(Algorithm::Sha1, secrets)?,
        }))
    },
    sign,
    check_secret: |_| Ok(()),
};

#[derive(Debug)]
struct Twilio {
    keys: Vec<Keyed>,
}

/// The string Twilio signs for a URL and a body.
pub(crate) fn signed_data(url: &str, body: &[u8], form: bool) -> Vec<u8> {
    let mut data = url.as_bytes().to_vec();
    if form {
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        params.sort();
        for (name, value) in params {
            data.extend_from_slice(name.as_bytes());
            data.extend_from_slice(value.as_bytes());
        }
    }
    data
}

/// The URL as called, and with its default port toggled.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let (authority, tail) = rest
        .find(['/', '?'])
        .map_or((rest, ""), |i| rest.split_at(i));
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let toggled = match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port => format!("{scheme}://{host}{tail}"),
        Some(_) => return variants,
        None => format!("{scheme}://{authority}:{default_port}{tail}"),
    };
    variants.push(toggled);
    variants
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

impl Verifier for Twilio {
    fn verify(&self, request: &SignedRequest<'_>) -> Result<Verified, SignatureError> {
        let tag = BASE64
            .decode(single_header(request.headers, "x-twilio-signature")?.trim())
            .ok()
            .filter(|tag| tag.len() == 20)
            .ok_or(SignatureError::Malformed)?;
        let path_and_query = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let url = match request.public_url {
            Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
            None => {
                let host = single_header(request.headers, header::HOST.as_str())?;
                format!("https://{host}{path_and_query}")
            }
        };
        let content_type = request
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let form = is_form(content_type);
        if !form {
            // A JSON body is bound to the URL by its hash.
            let expected = request
                .uri
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "bodySHA256"))
                .map(|(_, v)| v.into_owned())
                .ok_or(SignatureError::Malformed)?;
            let actual = hex::encode(Sha256::digest(request.body));
            if !bool::from(
                actual
                    .as_bytes()
                    .ct_eq(expected.to_ascii_lowercase().as_bytes()),
            ) {
                return Err(SignatureError::Mismatch);
            }
        }
        let tags = [tag];
        let matched = url_variants(&url).iter().fold(false, |found, candidate| {
            found
                | any_matches(
                    &self.keys,
                    &[&signed_data(candidate, request.body, form)],
                    &tags,
                )
        });
        if matched {
            Ok(Verified::default())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn sign(
    _: &Params<'_>,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let data = signed_data(input.url, input.body, is_form(input.content_type));
    let tag = Keyed::new(Algorithm::Sha1, secret.as_bytes()).compute(&[&data]);
    Ok(vec![(
        header_name("x-twilio-signature"),
        header_value(BASE64.encode(tag))?,
    )])
}

#[cfg(test)]
mod tests {
    use super::url_variants;

    #[test]
    fn default_ports_are_toggled() {
        assert_eq!(
            url_variants("https://a.com/x?y=1"),
            ["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
        );
        assert_eq!(
            url_variants("https://a.com:443/x"),
            ["https://a.com:443/x", "https://a.com/x"]
        );
        assert_eq!(url_variants("http://a.com:8080/x"), ["http://a.com:8080/x"]);
    }
}
