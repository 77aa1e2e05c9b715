use std::ops::Deref;

use super::{Context, FromDelivery, StateMap};
use crate::HandlerError;

/// A value given to [`crate::AppBuilder::state`], looked up by its type. A handler that takes a
/// `State<S>` the app was not given stops the app at startup, naming the type.
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromDelivery for State<S> {
    const READS_BODY: bool = false;

    fn from_delivery(cx: &Context) -> Result<Self, HandlerError> {
        cx.state
            .get::<S>()
            .cloned()
            .map(State)
            .ok_or_else(|| HandlerError::permanent(HandlerError::new(missing::<S>())))
    }

    fn check(state: &StateMap) -> Result<(), String> {
        match state.get::<S>() {
            Some(_) => Ok(()),
            None => Err(missing::<S>()),
        }
    }
}

fn missing<S>() -> String {
    let name = std::any::type_name::<S>();
    format!(
        "takes `State<{name}>`, but the app was given no `{name}`: add `.state(value)` to `App::builder()`"
    )
}

impl<S> Deref for State<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}
