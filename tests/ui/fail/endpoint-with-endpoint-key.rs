use hooksmith::webhook;

const GITHUB: hooksmith::Endpoint = hooksmith::Endpoint::new("/hooks/github").sig("github");

#[webhook(endpoint = GITHUB, sig = "none", event = "push")]
async fn on_event() {}

fn main() {}
