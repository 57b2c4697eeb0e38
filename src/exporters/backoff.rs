//! CONTRACT STUB.
#![allow(missing_docs, unused_variables)]
use std::time::Duration;

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("invalid backoff")]
pub struct InvalidBackoff;

#[derive(Debug, Clone, Copy)]
pub struct ExponentialBackoff;

impl ExponentialBackoff {
    pub fn try_new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
    ) -> Result<Self, InvalidBackoff> {
        unimplemented!()
    }
    /// The delay before retry number `attempt` (0-based), with full jitter from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        unimplemented!()
    }
}
