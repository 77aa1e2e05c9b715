use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github")]
async fn on_event<T: serde::de::DeserializeOwned + Send + 'static>(payload: hooksmith::Json<T>) {}

fn main() {}
