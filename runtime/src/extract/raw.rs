use std::ops::Deref;

use bytes::Bytes;

use super::{Context, FromDelivery};
use crate::HandlerError;

/// The delivery's body exactly as received and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Bytes);

impl FromDelivery for Raw {
    const READS_BODY: bool = true;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        Ok(Raw(cx.record.body.clone()))
    }
}

impl Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
