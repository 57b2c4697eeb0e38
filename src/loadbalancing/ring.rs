//! Which backend owns a key: rendezvous (highest random weight) hashing.
//!
//! Every key ranks every backend by `hash(key, backend)` and belongs to the
//! highest. Adding a backend to `n` moves only the keys it now wins (about
//! `1/(n+1)` of them), and removing one moves only the keys it owned (about
//! `1/n`), each to its second choice; no key moves between two backends
//! that both stay. With a handful of backends the `O(n)` cost per key is a
//! few hashes, cheaper than a ring's lookup structure and with no virtual
//! node count to tune.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The backends a key can go to, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    members: Vec<(String, u64)>,
}

impl Ring {
    /// A ring over `members` (their order does not matter; duplicates are
    /// kept once).
    pub fn new<I, S>(members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut members: Vec<(String, u64)> = members
            .into_iter()
            .map(|m| {
                let m = m.into();
                let seed = xxh3_64_with_seed(m.as_bytes(), 0);
                (m, seed)
            })
            .collect();
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        Self { members }
    }

    /// The members, sorted: [`Ring::owner`] indexes into this.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &str> {
        self.members.iter().map(|(m, _)| m.as_str())
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The index of the member owning `key_hash`; 0 for an empty ring.
    pub fn owner(&self, key_hash: u64) -> usize {
        let mut best = (0usize, 0u64);
        for (i, (_, seed)) in self.members.iter().enumerate() {
            let weight = xxh3_64_with_seed(&key_hash.to_le_bytes(), *seed);
            if i == 0 || weight > best.1 {
                best = (i, weight);
            }
        }
        best.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::split::key_hash;

    fn owners(ring: &Ring, keys: u32) -> Vec<String> {
        let names: Vec<&str> = ring.members().collect();
        (0..keys)
            .map(|k| names[ring.owner(key_hash(&k.to_be_bytes()))].to_owned())
            .collect()
    }

    #[test]
    fn keys_spread_evenly_and_only_about_one_nth_move() {
        let four = Ring::new((0..4).map(|i| format!("http://10.0.0.{i}:4317")));
        let before = owners(&four, 40_000);
        for m in four.members() {
            let share = before.iter().filter(|o| *o == m).count();
            assert!((8_000..12_000).contains(&share), "{m}: {share}");
        }
        // Remove one: only its keys move.
        let three = Ring::new((1..4).map(|i| format!("http://10.0.0.{i}:4317")));
        let after = owners(&three, 40_000);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let owned = before.iter().filter(|o| o.ends_with(".0:4317")).count();
        assert_eq!(moved, owned);
        // Add one: about 1/5 moves, all to the newcomer.
        let five = Ring::new((0..5).map(|i| format!("http://10.0.0.{i}:4317")));
        let after = owners(&five, 40_000);
        let moved: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        assert!((6_000..10_000).contains(&moved.len()), "{}", moved.len());
        assert!(moved.iter().all(|(_, b)| b.ends_with(".4:4317")));
        // Order of construction does not matter.
        let shuffled = Ring::new(["b", "a", "c", "a"]);
        assert_eq!(shuffled, Ring::new(["a", "b", "c"]));
    }
}
