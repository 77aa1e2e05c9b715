use std::ops::Deref;

use serde::de::DeserializeOwned;

use super::{Context, FromDelivery};
use crate::HandlerError;

/// A form-encoded body (`application/x-www-form-urlencoded`: Twilio callbacks, Slack slash
/// commands), deserialized into `T` from the verified raw bytes when the handler runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromDelivery for Form<T> {
    const READS_BODY: bool = true;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        serde_urlencoded::from_bytes(&cx.record.body)
            .map(Form)
            .map_err(|e| {
                HandlerError::new(format!(
                    "form body does not fit `{}`: {e}",
                    std::any::type_name::<T>()
                ))
            })
    }
}

impl<T> Deref for Form<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
