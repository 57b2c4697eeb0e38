//! `processors[].tail_sampling` (stub: filled in by the tail-sampling work).

use serde::{Deserialize, Serialize};

use super::Problems;

/// `tail_sampling`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {}

/// Checks one `tail_sampling` block at `at`.
pub(super) fn check(_p: &mut Problems, _at: &str, _c: &TailSamplingConfig) {}
