use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github")]
async fn on_event() -> u32 {
    7
}

fn main() {}
