use http::HeaderMap;

use super::{Context, FromDelivery};
use crate::HandlerError;

/// The delivery's headers, as stored: signature and authorization values are redacted.
#[derive(Debug, Clone, Default)]
pub struct Headers(pub HeaderMap);

impl Headers {
    /// The first value of a header, when it is text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

impl FromDelivery for Headers {
    const READS_BODY: bool = false;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        Ok(Headers(cx.record.headers.to_header_map()))
    }
}
