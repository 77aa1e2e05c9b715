use hooksmith::webhook;

struct Receipt {
    id: u64,
}

#[webhook(path = "/hooks/slack", sig = "none", ack = "handled")]
async fn on_event() -> Receipt {
    Receipt { id: 1 }
}

fn main() {}
