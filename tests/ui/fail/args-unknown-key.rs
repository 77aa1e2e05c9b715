use hooksmith::webhook;

#[webhook(paht = "/hooks/github", sig = "github")]
async fn on_event() {}

fn main() {}
