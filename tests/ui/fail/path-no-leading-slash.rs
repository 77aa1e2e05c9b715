use hooksmith::webhook;

#[webhook(path = "hooks/github", sig = "github")]
async fn on_event() {}

fn main() {}
