//! `processors[].spanmetrics` (stub: filled in by the span-metrics work).

use serde::{Deserialize, Serialize};

use super::{PipelineConfig, Problems};

/// `spanmetrics`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {}

/// Checks one `spanmetrics` block at `at` against every pipeline (the
/// metrics pipeline it feeds must exist and take metrics).
pub(super) fn check(
    _p: &mut Problems,
    _at: &str,
    _c: &SpanMetricsConfig,
    _pipelines: &[PipelineConfig],
) {
}
