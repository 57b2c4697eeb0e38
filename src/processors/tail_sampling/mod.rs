//! The `tail_sampling` policy engine: given every span of one trace, the
//! policies of a `tail_sampling` block ([`crate::config::tail_sampling`])
//! decide whether the trace is kept, with the Collector's semantics.
//!
//! Pure and synchronous: it neither holds spans nor waits for them. The data
//! path groups a trace's spans, waits `decision_wait`, calls
//! [`Sampler::decide`] and remembers the decision; the engine's only state is
//! the rate limiters' counts, clocked by the `now` it is given, so tests and
//! replays are deterministic.
//!
//! - `trace`: what policies read from spans spread over many
//!   `ResourceSpans`;
//! - `policy`: one compiled policy, its [`Outcome`] and the combining rule;
//! - `sampler`: [`Sampler`], every policy of a block, and its [`Decision`].

mod policy;
mod sampler;
pub mod stage;
pub mod trace;

pub use policy::Outcome;
pub use sampler::{Decision, Sampler};
pub use stage::Stage;

#[cfg(test)]
mod tests;
