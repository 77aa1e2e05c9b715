use hooksmith::webhook;

#[webhook(path = "/hooks/{tenant}", sig = "github")]
async fn on_event() {}

fn main() {}
