//! Certificate files that are re-read when they change on disk.
//!
//! A [`Watched`] value holds what was built from a set of PEM files (a
//! verifier, a certified key) behind an [`ArcSwap`]: every new handshake
//! reads the current value, so a rotated certificate is used by the next
//! connection without a restart, while open connections keep theirs.
//!
//! A poller task (one per [`Watched`], every [`POLL_INTERVAL`]) reads the
//! files and compares a hash of their contents with the last one seen.
//! Reading follows symlinks, so a Kubernetes Secret volume's atomic
//! `..data` symlink swap is seen like an in-place write. When the contents
//! changed it rebuilds the value:
//! - success: the new value is swapped in, `seedgate_tls_reloads_total` counts it;
//! - failure (unreadable, not PEM, key not matching the certificate): the
//!   last good value stays, the error is logged (file name and cause, never
//!   the contents) and `seedgate_tls_reload_errors_total` counts it once
//!   per distinct content, not once per poll.
//!
//! On every poll it also refreshes `seedgate_tls_certificate_expiry_seconds`
//! from the notAfter dates of the value in use. The poller ends when the
//! last handle on the [`Watched`] is dropped. Without a tokio runtime (a
//! plain unit test) nothing is polled and the files are read once.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::exporters::ExportError;
use crate::metrics::tls::{CertLabel, DestinationLabel, TlsMetrics};

/// How often the files are compared with what is loaded.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One file of a set: the config field naming it (for errors) and its path.
#[derive(Debug, Clone)]
pub(crate) struct PemFile {
    /// The config field, e.g. `tls.ca_file`.
    pub(crate) field: &'static str,
    /// The path as configured.
    pub(crate) path: PathBuf,
}

/// What a loader built from the files, and the notAfter (Unix seconds) of
/// each certificate it wants reported, by `cert` label.
pub(crate) struct Loaded<T> {
    /// The value handshakes use.
    pub(crate) value: T,
    /// `(cert label, notAfter)`.
    pub(crate) not_after: Vec<(&'static str, i64)>,
}

/// Builds the value from the files' contents, in the order of the files.
pub(crate) type Loader<T> = dyn Fn(&[Vec<u8>]) -> Result<Loaded<T>, ExportError> + Send + Sync;

/// Material built from PEM files and rebuilt when they change.
pub(crate) struct Watched<T> {
    destination: String,
    files: Vec<PemFile>,
    load: Box<Loader<T>>,
    current: ArcSwap<T>,
    state: Mutex<PollState>,
}

struct PollState {
    /// Hash of the contents last seen (good or bad).
    seen: u64,
    /// notAfter of the certificates in use.
    not_after: Vec<(&'static str, i64)>,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("destination", &self.destination)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

// === impl Watched ===

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and loads the files now (an error here fails the build), then
    /// starts the poller when a tokio runtime is there.
    ///
    /// # Errors
    /// The file that cannot be read, or the loader's error.
    pub(crate) fn start(
        destination: &str,
        files: Vec<PemFile>,
        load: Box<Loader<T>>,
    ) -> Result<Arc<Self>, ExportError> {
        let contents = read_all(&files)?;
        let loaded = load(&contents)?;
        let this = Arc::new(Self {
            destination: destination.to_owned(),
            files,
            load,
            current: ArcSwap::from_pointee(loaded.value),
            state: Mutex::new(PollState {
                seen: fingerprint(&contents),
                not_after: loaded.not_after,
            }),
        });
        let metrics = crate::metrics::tls::global();
        metrics.init_destination(destination);
        this.report_expiry(metrics);
        if !this.files.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(poll_loop(Arc::downgrade(&this)));
        }
        Ok(this)
    }

    /// The value in use.
    pub(crate) fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Compares the files with what was seen last and reloads on a change.
    pub(crate) fn poll(&self) {
        let metrics = crate::metrics::tls::global();
        let label = DestinationLabel {
            destination: self.destination.clone(),
        };
        let contents = read_all(&self.files);
        let seen = match &contents {
            Ok(c) => fingerprint(c),
            Err(e) => fingerprint_error(e),
        };
        let changed = {
            let mut state = self.lock_state();
            std::mem::replace(&mut state.seen, seen) != seen
        };
        if changed {
            match contents.and_then(|c| (self.load)(&c)) {
                Ok(loaded) => {
                    self.current.store(Arc::new(loaded.value));
                    self.lock_state().not_after = loaded.not_after;
                    metrics.reloads.get_or_create(&label).inc();
                    tracing::info!(
                        destination = %self.destination,
                        "TLS certificate files changed: reloaded; new connections use them"
                    );
                }
                Err(e) => {
                    metrics.reload_errors.get_or_create(&label).inc();
                    tracing::error!(
                        destination = %self.destination,
                        error = %e,
                        "TLS certificate files changed but cannot be used: the last good ones stay in use"
                    );
                }
            }
        }
        self.report_expiry(metrics);
    }

    fn report_expiry(&self, metrics: &TlsMetrics) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        for (cert, not_after) in &self.lock_state().not_after {
            metrics
                .certificate_expiry
                .get_or_create(&CertLabel {
                    destination: self.destination.clone(),
                    cert,
                })
                .set(not_after.saturating_sub(now));
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, PollState> {
        // The state is two plain values; a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn poll_loop<T: Send + Sync + 'static>(watched: Weak<Watched<T>>) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Some(w) = watched.upgrade() else {
            return;
        };
        // A few small files: reading them inline is cheaper than a hop to
        // the blocking pool.
        w.poll();
    }
}

fn read_all(files: &[PemFile]) -> Result<Vec<Vec<u8>>, ExportError> {
    files
        .iter()
        .map(|f| super::read_pem(f.field, &f.path))
        .collect()
}

fn fingerprint(contents: &[Vec<u8>]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    contents.hash(&mut h);
    h.finish()
}

fn fingerprint_error(e: &ExportError) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    e.to_string().hash(&mut h);
    h.finish()
}

/// The notAfter (Unix seconds) of a DER certificate.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The earliest notAfter of a set of DER certificates.
pub(crate) fn earliest_not_after<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> Option<i64> {
    ders.into_iter().filter_map(not_after).min()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn counting_loader() -> Box<Loader<String>> {
        Box::new(|c: &[Vec<u8>]| {
            let text = String::from_utf8(c[0].clone()).unwrap();
            if text.starts_with("bad") {
                return Err(ExportError::Tls {
                    field: "tls.ca_file",
                    reason: "not PEM".to_owned(),
                });
            }
            Ok(Loaded {
                value: text,
                not_after: vec![("ca", 4_000_000_000)],
            })
        })
    }

    fn count(
        f: &prometheus_client::metrics::family::Family<
            DestinationLabel,
            prometheus_client::metrics::counter::Counter,
        >,
        d: &str,
    ) -> u64 {
        f.get_or_create(&DestinationLabel {
            destination: d.to_owned(),
        })
        .get()
    }

    #[test]
    fn a_change_reloads_and_a_bad_file_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "one").unwrap();
        let dest = "watch-unit-test";
        let w = Watched::start(
            dest,
            vec![PemFile {
                field: "tls.ca_file",
                path: path.clone(),
            }],
            counting_loader(),
        )
        .unwrap();
        let m = crate::metrics::tls::global();
        assert_eq!(*w.current(), "one");
        w.poll();
        assert_eq!(count(&m.reloads, dest), 0, "no change, no reload");

        std::fs::write(&path, "two").unwrap();
        w.poll();
        assert_eq!(*w.current(), "two");
        assert_eq!(count(&m.reloads, dest), 1);

        std::fs::write(&path, "bad").unwrap();
        w.poll();
        w.poll();
        assert_eq!(*w.current(), "two", "the last good value stays");
        assert_eq!(count(&m.reload_errors, dest), 1, "counted once per content");

        std::fs::remove_file(&path).unwrap();
        w.poll();
        assert_eq!(*w.current(), "two");
        assert_eq!(count(&m.reload_errors, dest), 2);

        // A Kubernetes-style swap: the path becomes a symlink to new content.
        let target = dir.path().join("..data-2");
        std::fs::write(&target, "three").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        w.poll();
        assert_eq!(*w.current(), "three");
        assert_eq!(count(&m.reloads, dest), 2);
        let expiry = m
            .certificate_expiry
            .get_or_create(&CertLabel {
                destination: dest.to_owned(),
                cert: "ca",
            })
            .get();
        assert!(expiry > 0 && expiry < 4_000_000_000, "{expiry}");
    }
}
