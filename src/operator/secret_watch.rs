//! The Secrets one pipeline references, each followed by its own watch, so
//! that a Secret created, changed or deleted re-resolves the pipeline at
//! once instead of at the next periodic look.
//!
//! Why one watch per Secret, and not one per namespace: least privilege.
//! seedgate may read Secrets only in namespaces whose RoleBinding grants it
//! (`deploy/base/rbac.yaml`), and a seed may narrow that grant to the
//! Secrets' names (`resourceNames`), which Kubernetes authorises for list
//! and watch only with the field selector `metadata.name=<name>`. So each
//! referenced Secret gets a namespaced watcher with exactly that selector,
//! and a pipeline never sees another Secret than the ones it names.
//!
//! What is known of one Secret ([`SecretCache`]):
//!
//! - nothing until its watch's first list is done: a pipeline is not
//!   resolved, and so not published, from half of its Secrets
//!   ([`SecretCache::settled`]);
//! - then present (its data and resourceVersion) or absent
//!   (`ReferencedSecretMissing`), following every event; a relist (after
//!   410 Gone) replaces what was known;
//! - a watch error before the first list is done, or a refusal (401, 403)
//!   at any time, makes it unreadable: `ValidationFailed`, as a failed read
//!   always did. The watcher retries with backoff and the next list
//!   replaces that. Other errors after the list (a dropped connection, an
//!   API server restart) keep the last known value: the watcher resumes or
//!   relists, and a pipeline does not stop for a hiccup.
//!
//! Every error is counted in `seedgate_kube_watch_errors_total{kind="Secret"}`.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};

use super::crds::PipelineSpec;
use super::pipeline_spec::{SecretApiError, SecretData, SecretSource, secret_refs};
use crate::metrics::Metrics;

/// A Secret: (namespace, name).
pub type SecretKey = (String, String);

/// The Secrets a spec reads, as watch keys. References with an empty name
/// or namespace are left out: [`resolve`](super::pipeline_spec::resolve)
/// refuses them before reading anything.
pub fn secret_keys<S: PipelineSpec>(spec: &S) -> BTreeSet<SecretKey> {
    secret_refs(spec)
        .into_iter()
        .filter(|r| !r.name.is_empty() && !r.namespace.is_empty())
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect()
}

/// What is known of one Secret.
#[derive(Debug, Clone, PartialEq, Default)]
enum Known {
    /// Its watch has not listed yet.
    #[default]
    Unknown,
    /// It cannot be read; why (for the log).
    Unreadable(String),
    /// It does not exist.
    Absent,
    /// It exists.
    Present {
        data: SecretData,
        resource_version: Option<String>,
    },
}

impl Known {
    fn of(secret: Option<Secret>) -> Self {
        match secret {
            None => Known::Absent,
            Some(s) => Known::Present {
                data: s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
                resource_version: s.metadata.resource_version,
            },
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    known: Known,
    /// While a (re)list runs: what it found so far.
    relist: Option<Option<Secret>>,
}

/// What the watches of one pipeline know; see the module doc. Pure: fed
/// the watch events by [`SecretWatches`], read by `resolve`.
#[derive(Debug, Default)]
pub struct SecretCache {
    entries: BTreeMap<SecretKey, Entry>,
}

// === impl SecretCache ===

impl SecretCache {
    /// Follows exactly `keys`: forgets the others, adds the new ones as not
    /// known yet.
    pub fn follow(&mut self, keys: &BTreeSet<SecretKey>) {
        self.entries.retain(|k, _| keys.contains(k));
        for k in keys {
            self.entries.entry(k.clone()).or_default();
        }
    }

    /// Whether every followed Secret is known (present, absent or
    /// unreadable): only then may the pipeline be resolved.
    pub fn settled(&self) -> bool {
        self.entries.values().all(|e| e.known != Known::Unknown)
    }

    /// Takes one watch event of `key`; whether what is known changed.
    pub fn apply(&mut self, key: &SecretKey, event: Event<Secret>) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let next = match event {
            Event::Init => {
                entry.relist = Some(None);
                return false;
            }
            Event::InitApply(s) => {
                if let Some(found) = entry.relist.as_mut() {
                    *found = Some(s);
                }
                return false;
            }
            Event::InitDone => Known::of(entry.relist.take().flatten()),
            Event::Apply(s) => Known::of(Some(s)),
            Event::Delete(_) => Known::Absent,
        };
        let changed = entry.known != next;
        entry.known = next;
        changed
    }

    /// Takes one watch error of `key`; whether what is known changed.
    pub fn fail(&mut self, key: &SecretKey, error: &watcher::Error) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let authoritative =
            refused(error) || matches!(entry.known, Known::Unknown | Known::Unreadable(_));
        if !authoritative {
            return false;
        }
        entry.relist = None;
        let next = Known::Unreadable(error.to_string());
        let changed = entry.known != next;
        entry.known = next;
        changed
    }

    /// `namespace/name` → resourceVersion of every Secret present (for the
    /// effective-config ConfigMap).
    pub fn resource_versions(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter_map(|((ns, name), e)| match &e.known {
                Known::Present {
                    resource_version: Some(rv),
                    ..
                } => Some((format!("{ns}/{name}"), rv.clone())),
                _ => None,
            })
            .collect()
    }
}

impl SecretSource for SecretCache {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretApiError> {
        let key = (namespace.to_owned(), name.to_owned());
        match self.entries.get(&key).map(|e| &e.known) {
            Some(Known::Present { data, .. }) => Ok(Some(data.clone())),
            Some(Known::Absent) => Ok(None),
            Some(Known::Unreadable(why)) => Err(SecretApiError(why.clone())),
            Some(Known::Unknown) | None => Err(SecretApiError(format!(
                "Secret {namespace}/{name} is not listed yet"
            ))),
        }
    }
}

/// Whether the API server refused the request (401, 403): a statement
/// about the Secret that holds until the permission changes, not a hiccup.
fn refused(error: &watcher::Error) -> bool {
    let code = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    };
    matches!(code, Some(401 | 403))
}

type SecretEvents = BoxStream<'static, watcher::Result<Event<Secret>>>;

/// The watches of one pipeline's Secrets and what they know.
pub struct SecretWatches {
    client: kube::Client,
    streams: tokio_stream::StreamMap<SecretKey, SecretEvents>,
    cache: SecretCache,
}

impl std::fmt::Debug for SecretWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretWatches")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

// === impl SecretWatches ===

impl SecretWatches {
    /// No watches yet.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            streams: tokio_stream::StreamMap::new(),
            cache: SecretCache::default(),
        }
    }

    /// Watches exactly `keys`: starts the missing watches, drops the ones
    /// no longer referenced (a watch kept keeps what it knows).
    pub fn follow(&mut self, keys: &BTreeSet<SecretKey>) {
        let gone: Vec<SecretKey> = self
            .streams
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.streams.remove(&k);
        }
        for k in keys {
            if !self.streams.contains_key(k) {
                let (namespace, name) = k;
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
                let events = watcher::watcher(api, config).default_backoff().boxed();
                self.streams.insert(k.clone(), events);
            }
        }
        self.cache.follow(keys);
    }

    /// The next event of any watch; pending forever while there is none
    /// (a pipeline without Secret references).
    pub async fn next(&mut self) -> (SecretKey, watcher::Result<Event<Secret>>) {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        match tokio_stream::StreamExt::next(&mut self.streams).await {
            Some(next) => next,
            // A watcher's stream does not end; should one, wait for the
            // next `follow` rather than spin.
            None => std::future::pending().await,
        }
    }

    /// Takes what [`SecretWatches::next`] returned; whether what is known
    /// changed. Errors are counted and logged.
    pub fn apply(
        &mut self,
        key: &SecretKey,
        event: watcher::Result<Event<Secret>>,
        metrics: &Metrics,
        pipeline: &str,
    ) -> bool {
        match event {
            Ok(event) => self.cache.apply(key, event),
            Err(e) => {
                metrics.kube.watch_error("Secret");
                let (namespace, name) = key;
                tracing::warn!(%pipeline, secret = %name, %namespace, error = %e, "Watching a referenced Secret failed; retrying with backoff");
                self.cache.fail(key, &e)
            }
        }
    }

    /// What the watches know.
    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use kube::core::Status;

    use super::*;

    fn key(name: &str) -> SecretKey {
        ("ns".to_owned(), name.to_owned())
    }

    fn secret(name: &str, rv: &str, endpoint: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.to_owned());
        s.metadata.namespace = Some("ns".to_owned());
        s.metadata.resource_version = Some(rv.to_owned());
        s.data = Some(BTreeMap::from([(
            "endpoint".to_owned(),
            ByteString(endpoint.as_bytes().to_vec()),
        )]));
        s
    }

    fn endpoint(cache: &SecretCache, name: &str) -> Result<Option<Vec<u8>>, SecretApiError> {
        cache
            .get("ns", name)
            .map(|d| d.and_then(|d| d.get("endpoint").cloned()))
    }

    fn api_error(code: u16) -> watcher::Error {
        watcher::Error::InitialListFailed(kube::Error::Api(
            Status::failure("injected", "Injected")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn nothing_is_known_until_every_watch_listed() {
        let mut cache = SecretCache::default();
        cache.follow(&BTreeSet::from([key("a"), key("b")]));
        assert!(!cache.settled());
        assert!(endpoint(&cache, "a").is_err());

        assert!(!cache.apply(&key("a"), Event::Init));
        assert!(!cache.apply(&key("a"), Event::InitApply(secret("a", "1", "x"))));
        assert!(!cache.settled(), "a list in progress is not known");
        assert!(cache.apply(&key("a"), Event::InitDone));
        assert!(!cache.settled(), "b is not listed yet");
        cache.apply(&key("b"), Event::Init);
        assert!(cache.apply(&key("b"), Event::InitDone));
        assert!(cache.settled());

        assert_eq!(endpoint(&cache, "a").unwrap(), Some(b"x".to_vec()));
        assert_eq!(endpoint(&cache, "b").unwrap(), None, "absent");
        assert_eq!(
            cache.resource_versions(),
            BTreeMap::from([("ns/a".to_owned(), "1".to_owned())])
        );
    }

    #[test]
    fn changes_deletions_and_relists_are_followed() {
        let mut cache = SecretCache::default();
        cache.follow(&BTreeSet::from([key("a")]));
        cache.apply(&key("a"), Event::Init);
        cache.apply(&key("a"), Event::InitDone);
        assert!(cache.apply(&key("a"), Event::Apply(secret("a", "2", "x"))));
        assert!(!cache.apply(&key("a"), Event::Apply(secret("a", "2", "x"))));
        assert!(cache.apply(&key("a"), Event::Apply(secret("a", "3", "y"))));
        assert_eq!(endpoint(&cache, "a").unwrap(), Some(b"y".to_vec()));
        assert!(cache.apply(&key("a"), Event::Delete(secret("a", "4", "y"))));
        assert_eq!(endpoint(&cache, "a").unwrap(), None);

        // A relist keeps the last value until it is done, then replaces it.
        cache.apply(&key("a"), Event::Apply(secret("a", "5", "z")));
        cache.apply(&key("a"), Event::Init);
        assert_eq!(endpoint(&cache, "a").unwrap(), Some(b"z".to_vec()));
        assert!(cache.apply(&key("a"), Event::InitDone), "gone meanwhile");
        assert_eq!(endpoint(&cache, "a").unwrap(), None);

        // Events of a Secret no longer followed are ignored.
        cache.follow(&BTreeSet::new());
        assert!(!cache.apply(&key("a"), Event::Apply(secret("a", "6", "w"))));
        assert!(cache.settled());
    }

    #[test]
    fn errors_before_the_list_and_refusals_make_it_unreadable() {
        let mut cache = SecretCache::default();
        cache.follow(&BTreeSet::from([key("a"), key("b")]));
        // Before the first list: any error is an answer (ValidationFailed).
        assert!(cache.fail(&key("a"), &api_error(500)));
        assert!(endpoint(&cache, "a").is_err());
        cache.apply(&key("b"), Event::Init);
        cache.apply(&key("b"), Event::InitApply(secret("b", "1", "x")));
        cache.apply(&key("b"), Event::InitDone);
        assert!(cache.settled(), "unreadable is known too");

        // After it: a hiccup keeps the value, a refusal does not.
        assert!(!cache.fail(&key("b"), &api_error(500)));
        assert!(!cache.fail(&key("b"), &watcher::Error::NoResourceVersion));
        assert_eq!(endpoint(&cache, "b").unwrap(), Some(b"x".to_vec()));
        assert!(cache.fail(&key("b"), &api_error(403)));
        assert!(endpoint(&cache, "b").is_err());
        assert!(cache.resource_versions().is_empty());

        // The next successful list replaces it.
        cache.apply(&key("a"), Event::Init);
        assert!(cache.apply(&key("a"), Event::InitDone));
        assert_eq!(endpoint(&cache, "a").unwrap(), None);
    }

    #[test]
    fn only_complete_references_are_watched() {
        let spec: crate::operator::crds::TracePipelineSpec = serde_json::from_value(serde_json::json!({
            "output": {"otlp": {
                "endpoint": {"valueFrom": {"secretKeyRef": {"name": "otlp", "namespace": "ns", "key": "endpoint"}}},
                "headers": [
                    {"name": "a", "valueFrom": {"secretKeyRef": {"name": "otlp", "namespace": "ns", "key": "token"}}},
                    {"name": "b", "valueFrom": {"secretKeyRef": {"name": "", "namespace": "ns", "key": "k"}}},
                    {"name": "c", "valueFrom": {"secretKeyRef": {"name": "other", "namespace": "ns2", "key": "k"}}}
                ]
            }}
        }))
        .unwrap();
        assert_eq!(
            secret_keys(&spec),
            BTreeSet::from([
                ("ns".to_owned(), "otlp".to_owned()),
                ("ns2".to_owned(), "other".to_owned())
            ])
        );
    }
}
