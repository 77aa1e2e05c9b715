use hooksmith::webhook;

#[webhook(path = "/hooks/x", sig = "hmac-sha256", header = "X-Signature", encoding = "base32")]
async fn on_event() {}

fn main() {}
