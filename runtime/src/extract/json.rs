use std::ops::{Deref, DerefMut};

use serde::de::DeserializeOwned;

use super::{Context, FromDelivery};
use crate::HandlerError;

/// The delivery's JSON payload, deserialized into `T` from the verified raw bytes when the handler
/// runs. A payload that does not fit `T` is a failed run, recorded with serde's message and the
/// JSON path of the mismatch, and retried (a deploy that fixes `T` then picks it up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromDelivery for Json<T> {
    const READS_BODY: bool = true;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        let mut deserializer = serde_json::Deserializer::from_slice(&cx.payload);
        let value = T::deserialize(&mut deserializer).map_err(|e| {
            HandlerError::new(format!(
                "payload does not fit `{}`: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(Json(value))
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
