//! The effective-configuration ConfigMap (`seedgate-effective-config` in
//! seedgate's namespace, key `pipelines.yaml`): per pipeline its name, the
//! generation applied and the resourceVersions of the secrets it used, so an
//! operator can see what the running process applied.
//!
//! Written with optimistic locking: read, merge, replace carrying the read
//! `resourceVersion`. On 409 Conflict (someone wrote in between) it reads
//! again, merges again and retries with a bounded backoff, counting each
//! conflict in `seedgate_kube_configmap_conflicts_total`. Merging keeps every
//! other key of the ConfigMap and its labels and annotations: only
//! `pipelines.yaml` is seedgate's, so a concurrent writer of anything else
//! never loses its update.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// The ConfigMap's name.
pub const NAME: &str = "seedgate-effective-config";
/// The key seedgate owns in it.
pub const KEY: &str = "pipelines.yaml";
/// Attempts before giving up (the next change tries again).
const MAX_ATTEMPTS: u32 = 8;

/// What was applied for one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPipeline {
    /// `LogPipeline`, `MetricPipeline` or `TracePipeline`.
    pub kind: String,
    /// The pipeline's name.
    pub name: String,
    /// `metadata.generation` applied.
    pub generation: i64,
    /// `namespace/name` → resourceVersion of each secret it used.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// The `pipelines.yaml` text for `pipelines`, sorted by kind and name so
/// that equal content is equal text (no needless writes).
pub fn render(pipelines: &[AppliedPipeline]) -> String {
    let mut sorted = pipelines.to_vec();
    sorted.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    serde_saphyr::to_string(&sorted).unwrap_or_default()
}

/// `current` with seedgate's key set to `text`, everything else kept.
pub fn merge(current: Option<ConfigMap>, text: &str) -> ConfigMap {
    let mut cm = current.unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    cm.data
        .get_or_insert_with(BTreeMap::new)
        .insert(KEY.to_owned(), text.to_owned());
    cm
}

/// Writes `pipelines` into the ConfigMap (all of them), retrying conflicts.
///
/// # Errors
/// The last API error when every attempt failed.
pub async fn write(
    api: &Api<ConfigMap>,
    pipelines: &[AppliedPipeline],
    metrics: &Metrics,
) -> Result<(), kube::Error> {
    update(api, metrics, |_| render(pipelines)).await
}

/// Replaces the entries of one `kind` in the ConfigMap with `pipelines`,
/// keeping the other kinds' (each kind's aggregator writes its own).
///
/// # Errors
/// The last API error when every attempt failed.
pub async fn write_kind(
    api: &Api<ConfigMap>,
    kind: &str,
    pipelines: &[AppliedPipeline],
    metrics: &Metrics,
) -> Result<(), kube::Error> {
    update(api, metrics, |current| {
        let mut all: Vec<AppliedPipeline> = current
            .and_then(|t| serde_saphyr::from_str(t).ok())
            .unwrap_or_default();
        all.retain(|p| p.kind != kind);
        all.extend(pipelines.iter().cloned());
        render(&all)
    })
    .await
}

/// Read, compute the new text from the current one, write with the read
/// resourceVersion; on 409 read again and retry with a bounded backoff.
async fn update(
    api: &Api<ConfigMap>,
    metrics: &Metrics,
    compute: impl Fn(Option<&str>) -> String,
) -> Result<(), kube::Error> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = api.get_opt(NAME).await?;
        let old = current
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(KEY))
            .cloned();
        let text = compute(old.as_deref());
        if old.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let exists = current.is_some();
        let cm = merge(current, &text);
        let result = if exists {
            api.replace(NAME, &PostParams::default(), &cm).await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match result {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < MAX_ATTEMPTS => {
                metrics.kube.configmap_conflicts.inc();
                tracing::debug!(
                    attempt,
                    "Conflict writing the effective-config ConfigMap; reading it again"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                if matches!(&e, kube::Error::Api(a) if a.code == 409) {
                    metrics.kube.configmap_conflicts.inc();
                }
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(kind: &str, name: &str, generation: i64) -> AppliedPipeline {
        AppliedPipeline {
            kind: kind.into(),
            name: name.into(),
            generation,
            secrets: BTreeMap::from([("ns/s".to_owned(), "42".to_owned())]),
        }
    }

    #[test]
    fn rendering_is_sorted_and_reads_back() {
        let a = render(&[
            applied("TracePipeline", "b", 2),
            applied("LogPipeline", "a", 1),
        ]);
        let b = render(&[
            applied("LogPipeline", "a", 1),
            applied("TracePipeline", "b", 2),
        ]);
        assert_eq!(a, b);
        let back: Vec<AppliedPipeline> = serde_saphyr::from_str(&a).unwrap_or_default();
        assert_eq!(back[0], applied("LogPipeline", "a", 1));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn merging_keeps_what_others_wrote() {
        let mut theirs = merge(None, "old");
        theirs
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("other".into(), "keep me".into());
        theirs.metadata.labels = Some(BTreeMap::from([("team".into(), "x".into())]));
        theirs.metadata.resource_version = Some("7".into());
        let merged = merge(Some(theirs), "new");
        let data = merged.data.unwrap_or_default();
        assert_eq!(data.get(KEY).map(String::as_str), Some("new"));
        assert_eq!(data.get("other").map(String::as_str), Some("keep me"));
        assert!(merged.metadata.labels.is_some());
        assert_eq!(
            merged.metadata.resource_version.as_deref(),
            Some("7"),
            "optimistic lock kept"
        );
    }
}
