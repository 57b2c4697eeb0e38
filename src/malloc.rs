//! glibc's malloc, tuned for a process that allocates and frees
//! megabyte-sized buffers many times a second.
//!
//! # Why
//!
//! Every batch seedgate sends is a fresh buffer of up to `batch.max_bytes`
//! (read out of LMDB, then copied into tonic's or hyper's encode buffer),
//! freed once the backend answered. glibc's defaults give such buffers back
//! to the kernel and take them again:
//!
//! - a free that leaves more than `trim_threshold` (dynamic: twice the
//!   largest block it ever unmapped) at the top of a thread's arena gives
//!   that memory back with `madvise(MADV_DONTNEED)`;
//! - the next batch faults every page in again, each one zeroed by the
//!   kernel.
//!
//! With four delivery loops per pipeline (load balancing) their frees
//! coalesce past the threshold all the time: `perf` put about 100 ns per
//! span in page faults, zeroing and unmapping there, and none in the
//! single-destination run. Fixed thresholds keep up to [`TRIM_THRESHOLD`]
//! free per arena for the next batch, and serve blocks below
//! [`MMAP_THRESHOLD`] (every batch at the default limits) from the arenas
//! instead of a mapping of their own. The price is that much memory kept
//! per busy arena after a burst; the README's performance section has the
//! figures before and after.
//!
//! An operator who tuned malloc keeps the tuning: with `GLIBC_TUNABLES`
//! holding `glibc.malloc.` settings, or any of glibc's older `MALLOC_*`
//! variables (the deployments set `MALLOC_MMAP_THRESHOLD_`), this module
//! changes nothing.

/// Free memory an arena keeps at its top before giving it back.
pub const TRIM_THRESHOLD: usize = 16 * 1024 * 1024;
/// Blocks at least this large get a mapping of their own (and lose it when
/// freed); smaller ones come from the arenas. Above twice the default
/// `batch.max_bytes`, since encode buffers grow by doubling.
pub const MMAP_THRESHOLD: usize = 8 * 1024 * 1024;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds above are in force.
    Applied,
    /// The environment tunes malloc itself: left as the operator set it.
    Operator,
    /// Not glibc, or glibc refused a setting: its defaults are in force.
    Unavailable,
}

/// Sets the thresholds, unless the environment already tunes malloc. Call
/// it first thing, before any thread starts.
pub fn tune() -> Tuning {
    if operator_tunes(std::env::vars_os()) {
        return Tuning::Operator;
    }
    set_thresholds()
}

/// Whether `vars` (the environment) tune glibc's malloc: `GLIBC_TUNABLES`
/// with a `glibc.malloc.` setting, or one of the `MALLOC_*` variables glibc
/// still reads (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX`, ...). A
/// deployment that sets one has chosen its trade-off; overriding it
/// silently would undo, for example, the per-request mappings that keep
/// large request bodies out of the arenas.
fn operator_tunes(
    mut vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> bool {
    vars.any(|(name, value)| {
        let name = name.to_string_lossy();
        name.starts_with("MALLOC_")
            || (name == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc."))
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    let as_int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes the allocator's parameters; it is
    // called before any thread of ours starts allocating concurrently, and
    // glibc takes its arena lock for it anyway.
    #[allow(unsafe_code)]
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    };
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_malloc_settings_are_left_alone() {
        let env = |vars: &[(&str, &str)]| {
            operator_tunes(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())))
        };
        assert!(!env(&[
            ("PATH", "/bin"),
            ("GLIBC_TUNABLES", "glibc.rtld.nns=2")
        ]));
        assert!(env(&[("MALLOC_MMAP_THRESHOLD_", "131072")]));
        assert!(env(&[("MALLOC_ARENA_MAX", "2")]));
        assert!(env(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")]));
    }

    #[test]
    fn the_thresholds_are_set_unless_the_operator_tunes_malloc() {
        // The test binary runs without malloc settings (CI and
        // scripts/test.sh).
        if !operator_tunes(std::env::vars_os()) {
            assert_eq!(tune(), Tuning::Applied);
        }
        assert!(MMAP_THRESHOLD >= 2 * crate::config::DEFAULT_BATCH_MAX_BYTES as usize);
    }
}
