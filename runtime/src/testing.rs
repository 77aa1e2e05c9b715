//! Helpers for testing webhook handlers: sign a delivery for any scheme exactly as the provider
//! would, and control time.
//!
//! ```
//! use hooksmith::testing::{Params, SignInput, sign};
//!
//! let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
//! let input = SignInput { body, timestamp: 1_614_265_330, id: "", url: "", content_type: None };
//! let headers = sign("stripe", &Params::default(), "whsec_test_secret", &input).unwrap();
//! assert_eq!(headers[0].0, "stripe-signature");
//! assert!(headers[0].1.to_str().unwrap().starts_with("t=1614265330,v1="));
//! ```

pub use crate::clock::ManualClock;
pub use crate::scheme::{Params, SignInput, sign};
