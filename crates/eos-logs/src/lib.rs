//! Log extraction: turn the platform's usage logs and AWS ALB, CloudFront and
//! WAF logs into [`Observation`]s — per (space, client address) evidence of
//! who really calls each space.

mod observation;

pub use observation::{Observation, StatusCounts};
