//! Per-tenant connections (seed 002): on an endpoint whose path holds `{connection}`, each request
//! is verified with the named connection's secrets, read from the store and cached briefly so a
//! busy tenant costs no query per request. Changes made through this instance's admin API take
//! effect at once; changes made through another instance within [`TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderName;

use crate::error::Rejection;
use crate::registry::EndpointRt;
use crate::scheme::{Params, Secret, Verifier};
use crate::store::{Connection, Store};

/// How long a looked-up connection (or its absence) is trusted.
pub(crate) const TTL: Duration = Duration::from_secs(5);

/// A connection ready to verify with.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) id_header: Option<HeaderName>,
}

type Entry = (Instant, Option<Arc<Tenant>>);

/// Connections by `(endpoint path, name)`.
#[derive(Debug, Default)]
pub(crate) struct Tenants {
    cache: Mutex<HashMap<(&'static str, String), Entry>>,
}

impl Tenants {
    /// The tenant for `name` on `endpoint`: 404 for an unknown connection or one of another
    /// scheme, 503 when the store cannot be read.
    pub(crate) async fn resolve(
        &self,
        store: &dyn Store,
        endpoint: &EndpointRt,
        name: &str,
    ) -> Result<Arc<Tenant>, Rejection> {
        let key = (endpoint.path, name.to_owned());
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some((at, tenant)) = cached
            && at.elapsed() < TTL
        {
            return tenant.ok_or(Rejection::NotFound);
        }
        let connection = store.connection(name).await.map_err(|error| {
            tracing::error!(target: "hooksmith::store", %error, "reading a connection failed");
            Rejection::Unavailable
        })?;
        let tenant = connection.and_then(|c| build(endpoint, &c)).map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (Instant::now(), tenant.clone()));
        }
        tenant.ok_or(Rejection::NotFound)
    }

    /// Forgets what is cached for a connection (after the admin API changed it).
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(_, n), _| n != name);
        }
    }
}

fn build(endpoint: &EndpointRt, connection: &Connection) -> Option<Tenant> {
    if connection.kind != endpoint.scheme {
        tracing::warn!(
            target: "hooksmith",
            connection = %connection.name,
            kind = %connection.kind,
            endpoint = endpoint.path,
            "a connection of another scheme was addressed on this endpoint; answering 404"
        );
        return None;
    }
    let params = Params {
        header: connection
            .signature_header
            .as_deref()
            .or(endpoint.params.header),
        prefix: endpoint.params.prefix,
        encoding: endpoint.params.encoding,
    };
    let secrets: Vec<Secret> = connection
        .secrets
        .iter()
        .map(|s| Secret::new(s.as_str()))
        .collect();
    match (endpoint.scheme_def.build)(&params, &secrets) {
        Ok(verifier) => Some(Tenant {
            verifier,
            id_header: connection
                .nonce_header
                .as_deref()
                .and_then(|h| HeaderName::try_from(h).ok()),
        }),
        Err(error) => {
            tracing::error!(target: "hooksmith", connection = %connection.name, %error, "a connection cannot verify");
            None
        }
    }
}
