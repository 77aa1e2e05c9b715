use hooksmith::webhook;

#[webhook(path = "/hooks/x", sig = "none", methods = ["POST", "FETCH"])]
async fn on_event() {}

fn main() {}
