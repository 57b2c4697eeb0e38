//! PEM material as files: seedgate's `tls` settings take file paths
//! (`ca_file`, `cert_file`, `key_file`), a pipeline gives PEM text inline or
//! in a Secret, so [`resolve`](super::pipeline_spec::resolve) writes it here.
//!
//! [`DirPemStore`] keeps one file per distinct content, named by its
//! SHA-256 (`<hex>.pem`), mode 0600 in a directory of mode 0700: the same
//! material gives the same path (so a resolve that changes nothing changes no
//! path and rebuilds no exporter), and a changed Secret gives a new one.
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a file. Keep the directory on a memory-backed volume (`emptyDir` with
//! `medium: Memory`): it holds private keys.
//!
//! Many pipelines of every kind share the directory, each resolved by its
//! own actor at its own time, so no one of them can say which files are
//! unused. Each writes through its own [`PemLease`]: the lease records the
//! files it stored, [`PemLease::keep_only`] narrows them to what the
//! pipeline's latest resolution names, and a file is removed once no lease
//! holds it any more (dropping a lease releases its files). Storing and
//! removing happen under one lock, so a file just written by one pipeline
//! is never removed by another's clean-up before it is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Where PEM material goes; [`DirPemStore`] or a [`PemLease`] in production,
/// anything in tests.
pub trait PemStore {
    /// Stores `pem` and returns the path of a file holding exactly it.
    ///
    /// # Errors
    /// When the file cannot be written.
    fn store(&self, pem: &[u8]) -> std::io::Result<PathBuf>;
}

/// A directory of content-addressed PEM files.
#[derive(Debug)]
pub struct DirPemStore {
    dir: PathBuf,
    /// The files each lease holds, by lease id.
    in_use: Mutex<BTreeMap<u64, BTreeSet<PathBuf>>>,
    next_lease: AtomicU64,
}

impl DirPemStore {
    /// Uses `dir`, creating it (mode 0700) if needed.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(Self {
            dir,
            in_use: Mutex::new(BTreeMap::new()),
            next_lease: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path `pem` is (or would be) stored at.
    pub fn path_for(&self, pem: &[u8]) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, pem);
        self.dir
            .join(format!("{}.pem", hex::encode(digest.as_ref())))
    }

    /// A new lease for one owner (one pipeline); `owner` names it in logs.
    pub fn lease(self: &Arc<Self>, owner: impl Into<String>) -> PemLease {
        let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, BTreeSet::new());
        PemLease {
            store: Arc::clone(self),
            id,
            owner: owner.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, BTreeSet<PathBuf>>> {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every file of the directory that no lease holds; returns how
    /// many. The caller holds the lock, so no store runs meanwhile (a file
    /// being written is not recorded yet, and its temporary file is in the
    /// directory).
    fn remove_unused(&self, in_use: &BTreeMap<u64, BTreeSet<PathBuf>>) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_file() && !in_use.values().any(|files| files.contains(&path)) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes `pem` to its content-addressed path unless it is there.
    fn write(&self, pem: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path_for(pem);
        if std::fs::read(&path).is_ok_and(|have| have == pem) {
            return Ok(path);
        }
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(pem)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Writes without recording the file in any lease (a later clean-up of any
/// lease removes it): for a caller that owns the whole directory (tests).
impl PemStore for DirPemStore {
    fn store(&self, pem: &[u8]) -> std::io::Result<PathBuf> {
        let _in_use = self.lock();
        self.write(pem)
    }
}

/// One owner's hold on files of a [`DirPemStore`]; see the module doc.
/// Dropping it releases them (and removes those no other lease holds).
#[derive(Debug)]
pub struct PemLease {
    store: Arc<DirPemStore>,
    id: u64,
    owner: String,
}

impl PemLease {
    /// Holds exactly `files` from now on (the files the owner's latest
    /// resolution names), and removes every file no lease holds; returns how
    /// many were removed.
    ///
    /// # Errors
    /// When the directory cannot be read or a file cannot be removed (the
    /// lease holds `files` all the same).
    pub fn keep_only(&self, files: &[PathBuf]) -> std::io::Result<usize> {
        let mut in_use = self.store.lock();
        let wanted: BTreeSet<PathBuf> = files.iter().cloned().collect();
        if in_use.get(&self.id) == Some(&wanted) {
            return Ok(0);
        }
        in_use.insert(self.id, wanted);
        self.store.remove_unused(&in_use)
    }
}

impl PemStore for PemLease {
    fn store(&self, pem: &[u8]) -> std::io::Result<PathBuf> {
        let mut in_use = self.store.lock();
        let path = self.store.write(pem)?;
        in_use.entry(self.id).or_default().insert(path.clone());
        Ok(path)
    }
}

impl Drop for PemLease {
    fn drop(&mut self) {
        let mut in_use = self.store.lock();
        in_use.remove(&self.id);
        if let Err(e) = self.store.remove_unused(&in_use) {
            tracing::warn!(owner = %self.owner, error = %e, "Cannot clean up unused PEM files");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn same_content_same_file_other_content_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirPemStore::new(dir.path().join("tls")).unwrap();
        let a = store.store(b"pem a").unwrap();
        let a2 = store.store(b"pem a").unwrap();
        let b = store.store(b"pem b").unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_eq!(a, store.path_for(b"pem a"));
        assert_eq!(std::fs::read(&a).unwrap(), b"pem a");
        assert_eq!(
            a.file_name().unwrap().to_str().unwrap(),
            // sha256("pem a")
            format!(
                "{}.pem",
                hex::encode(ring::digest::digest(&ring::digest::SHA256, b"pem a"))
            )
        );
        assert!(a.starts_with(store.dir()));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600_in_a_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = DirPemStore::new(dir.path().join("tls")).unwrap();
        let p = store.store(b"secret key").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[test]
    fn a_damaged_file_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirPemStore::new(dir.path()).unwrap();
        let p = store.path_for(b"pem");
        std::fs::write(&p, b"pe").unwrap();
        assert_eq!(store.store(b"pem").unwrap(), p);
        assert_eq!(std::fs::read(&p).unwrap(), b"pem");
    }

    /// Leases of different pipelines (of different kinds) share the
    /// directory: one narrowing its files never removes what another holds,
    /// nor what another just stored; a dropped lease releases its files.
    #[test]
    fn a_file_goes_only_when_no_lease_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirPemStore::new(dir.path()).unwrap());
        let logs = store.lease("logpipeline.a");
        let traces = store.lease("tracepipeline.b");
        let shared = logs.store(b"shared ca").unwrap();
        let log_key = logs.store(b"log key").unwrap();
        assert_eq!(traces.store(b"shared ca").unwrap(), shared);
        let trace_key = traces.store(b"trace key").unwrap();
        std::fs::write(dir.path().join(".left.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("old-run.pem"), b"x").unwrap();

        // The trace pipeline's resolution names only its key now: the
        // shared CA stays for the log pipeline; leftovers go.
        assert_eq!(
            traces.keep_only(std::slice::from_ref(&trace_key)).unwrap(),
            2
        );
        assert!(shared.exists() && log_key.exists() && trace_key.exists());
        assert!(!dir.path().join(".left.tmp").exists());
        assert!(!dir.path().join("old-run.pem").exists());

        // Stored by one lease and not yet narrowed: another's clean-up keeps it.
        let new_key = logs.store(b"new log key").unwrap();
        assert_eq!(traces.keep_only(&[]).unwrap(), 1, "the trace key went");
        assert!(new_key.exists() && log_key.exists() && shared.exists());
        assert!(!trace_key.exists());

        // Unchanged: nothing to do.
        assert_eq!(
            logs.keep_only(&[shared.clone(), new_key.clone()]).unwrap(),
            1
        );
        assert_eq!(
            logs.keep_only(&[shared.clone(), new_key.clone()]).unwrap(),
            0
        );
        assert!(!log_key.exists());

        // The log pipeline goes: its files with it; the trace lease holds none.
        drop(logs);
        assert!(!shared.exists() && !new_key.exists());
        drop(traces);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
