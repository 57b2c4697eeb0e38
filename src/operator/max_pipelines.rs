//! Which pipelines of a kind may run when there are more than the limit.
//!
//! Kyma allows 5 pipelines per kind and gives the slots to the first 5 that
//! take its lock ConfigMap, which depends on the order the manager happened
//! to reconcile them in. seedgate decides from the objects alone, so every
//! replica and every restart decide the same: the oldest `creationTimestamp`
//! wins, ties go to the name in byte order, an object without a timestamp
//! comes last. Pass only the pipelines that resolved (an invalid pipeline
//! takes no slot, as in Kyma, where the lock is taken after the secret,
//! endpoint and TLS checks); the rest get
//! [`MSG_MAX_PIPELINES_EXCEEDED`](super::conditions::MSG_MAX_PIPELINES_EXCEEDED).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Kyma's `MaxPipelineCount`: pipelines per kind.
pub const DEFAULT_MAX_PIPELINES: usize = 5;

/// A pipeline competing for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.creationTimestamp`.
    pub created: Option<&'a Time>,
}

impl<'a> Candidate<'a> {
    /// The candidate of an object.
    pub fn of<K: kube::Resource>(obj: &'a K) -> Self {
        let meta = obj.meta();
        Self {
            name: meta.name.as_deref().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref(),
        }
    }
}

/// The names that may run: all of them when `limit` is `None` (unlimited)
/// or not exceeded, else the `limit` oldest.
pub fn admitted<'a>(candidates: &[Candidate<'a>], limit: Option<usize>) -> BTreeSet<&'a str> {
    let mut order: Vec<&Candidate<'a>> = candidates.iter().collect();
    // `None` sorts after every timestamp.
    order.sort_by(|a, b| {
        (a.created.is_none(), a.created, a.name).cmp(&(b.created.is_none(), b.created, b.name))
    });
    order
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| c.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn oldest_win_ties_by_name_missing_timestamps_last() {
        let (t1, t2, t3) = (t(100), t(200), t(300));
        let c = |name, created| Candidate { name, created };
        let all = [
            c("f", Some(&t3)),
            c("e", None),
            c("b", Some(&t2)),
            c("a", Some(&t2)),
            c("z", Some(&t1)),
            c("d", None),
            c("c", Some(&t3)),
        ];
        for (limit, want) in [
            (Some(0), vec![]),
            (Some(1), vec!["z"]),
            (Some(3), vec!["a", "b", "z"]),
            (Some(5), vec!["a", "b", "c", "f", "z"]),
            (Some(6), vec!["a", "b", "c", "d", "f", "z"]),
            (Some(7), vec!["a", "b", "c", "d", "e", "f", "z"]),
            (Some(50), vec!["a", "b", "c", "d", "e", "f", "z"]),
            (None, vec!["a", "b", "c", "d", "e", "f", "z"]),
        ] {
            let got: Vec<_> = admitted(&all, limit).into_iter().collect();
            assert_eq!(got, want, "limit {limit:?}");
        }
        // The input order does not matter.
        let mut rev = all;
        rev.reverse();
        assert_eq!(admitted(&rev, Some(5)), admitted(&all, Some(5)));
    }

    #[test]
    fn candidate_of_an_object() {
        let mut p = crate::operator::crds::TracePipeline::new(
            "a",
            serde_json::from_value(serde_json::json!({
                "output": {"otlp": {"endpoint": {"value": "http://x:4317"}}}
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        );
        p.metadata.creation_timestamp = Some(t(5));
        let c = Candidate::of(&p);
        assert_eq!(c.name, "a");
        assert_eq!(c.created, Some(&t(5)));
        assert_eq!(admitted(&[c], Some(DEFAULT_MAX_PIPELINES)).len(), 1);
    }
}
