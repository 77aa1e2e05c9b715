use hooksmith::webhook;

#[webhook(sig = "github")]
async fn on_event() {}

fn main() {}
