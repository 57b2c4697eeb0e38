//! PEM material as files: seedgate's `tls` settings take file paths
//! (`ca_file`, `cert_file`, `key_file`), a pipeline gives PEM text inline or
//! in a Secret, so [`resolve`](super::pipeline_spec::resolve) writes it here.
//!
//! [`DirPemStore`] keeps one file per distinct content, named by its
//! SHA-256 (`<hex>.pem`), mode 0600 in a directory of mode 0700: the same
//! material gives the same path (so a resolve that changes nothing changes no
//! path and rebuilds no exporter), and a changed Secret gives a new one.
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a file. [`DirPemStore::retain`] removes what no pipeline uses any
//! more. Keep the directory on a memory-backed volume (`emptyDir` with
//! `medium: Memory`): it holds private keys.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where PEM material goes; [`DirPemStore`] in production, anything in tests.
pub trait PemStore {
    /// Stores `pem` and returns the path of a file holding exactly it.
    ///
    /// # Errors
    /// When the file cannot be written.
    fn store(&self, pem: &[u8]) -> std::io::Result<PathBuf>;
}

/// A directory of content-addressed PEM files.
#[derive(Debug, Clone)]
pub struct DirPemStore {
    dir: PathBuf,
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
        Ok(Self { dir })
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

    /// Removes every file of the directory that is not in `keep` (the
    /// `pem_files` of every pipeline still resolved); returns how many. Call
    /// it from the task that stores, not beside it: a file being written is
    /// not in `keep` yet.
    ///
    /// # Errors
    /// When the directory cannot be read or a file cannot be removed.
    pub fn retain(&self, keep: &BTreeSet<PathBuf>) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_file() && !keep.contains(&path) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl PemStore for DirPemStore {
    fn store(&self, pem: &[u8]) -> std::io::Result<PathBuf> {
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

    #[test]
    fn retain_removes_what_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirPemStore::new(dir.path()).unwrap();
        let a = store.store(b"a").unwrap();
        let b = store.store(b"b").unwrap();
        std::fs::write(dir.path().join(".left.tmp"), b"x").unwrap();
        assert_eq!(store.retain(&BTreeSet::from([a.clone()])).unwrap(), 2);
        assert!(a.exists());
        assert!(!b.exists());
    }
}
