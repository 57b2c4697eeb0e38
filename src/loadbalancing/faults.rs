//! Fault injection for tests (`admin.fault_injection`,
//! `POST /debug/pipelines/{destination}/backends/{backend}/crash`): makes
//! one backend's delivery loop panic, exactly as a bug would, so that tests
//! can watch the balancer's supervision restart it.
//!
//! Every backend loop of every balancer registers its switch here while its
//! backend exists; the admin handler looks the switch up and flips it, so a
//! request needs no mailbox and gets an exact answer (no such pipeline, no
//! such backend, loop not running).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The switches of every load-balanced backend loop. See the module doc.
#[derive(Debug, Default)]
pub struct Faults {
    loops: Mutex<BTreeMap<Key, Arc<LoopFault>>>,
}

/// A backend of one balancer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    destination: String,
    signal: &'static str,
    endpoint: String,
}

/// One backend loop's switch; the loop's plan holds it too.
#[derive(Debug, Default)]
pub struct LoopFault {
    crash: Notify,
    running: AtomicBool,
}

/// What a crash request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// These loops (one per balanced signal of the pipeline) will panic.
    Injected {
        /// The backend's endpoint.
        endpoint: String,
        /// How many loops.
        loops: usize,
    },
    /// No load-balanced pipeline of that name.
    NoPipeline,
    /// The pipeline has no such backend; these are its backends.
    NoBackend(Vec<String>),
    /// The backend's loop does not run now (it waits for a restart, or the
    /// backend is out of the ring for failing).
    NotRunning(String),
}

/// Keeps a loop's switch registered; dropped with its backend.
#[derive(Debug)]
pub struct Registration {
    faults: Arc<Faults>,
    key: Key,
    fault: Arc<LoopFault>,
}

/// Marks a loop as running while it lives (a panic drops it too).
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

// === impl Faults ===

impl Faults {
    fn loops(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Arc<LoopFault>>> {
        // The map stays consistent whatever panicked while holding it.
        self.loops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the switch of the loop of `endpoint`, a backend of the
    /// balancer of `destination` and `signal` (replacing the one of an
    /// earlier balancer of theirs).
    pub fn register(
        self: &Arc<Self>,
        destination: &str,
        signal: &'static str,
        endpoint: &str,
    ) -> Registration {
        let key = Key {
            destination: destination.to_owned(),
            signal,
            endpoint: endpoint.to_owned(),
        };
        let fault = Arc::new(LoopFault::default());
        self.loops().insert(key.clone(), Arc::clone(&fault));
        Registration {
            faults: Arc::clone(self),
            key,
            fault,
        }
    }

    /// Crashes the running loops of `backend` of `destination`: every
    /// balanced signal's. `backend` is an endpoint, or an index into the
    /// pipeline's endpoints, sorted.
    pub fn crash(&self, destination: &str, backend: &str) -> Crash {
        let loops = self.loops();
        let of_pipeline: Vec<(&Key, &Arc<LoopFault>)> = loops
            .iter()
            .filter(|(k, _)| k.destination == destination)
            .collect();
        if of_pipeline.is_empty() {
            return Crash::NoPipeline;
        }
        let endpoints: BTreeSet<&str> = of_pipeline
            .iter()
            .map(|(k, _)| k.endpoint.as_str())
            .collect();
        let endpoint = if endpoints.contains(backend) {
            Some(backend)
        } else {
            backend
                .parse::<usize>()
                .ok()
                .and_then(|i| endpoints.iter().nth(i).copied())
        };
        let Some(endpoint) = endpoint else {
            return Crash::NoBackend(endpoints.into_iter().map(str::to_owned).collect());
        };
        let running: Vec<&Arc<LoopFault>> = of_pipeline
            .iter()
            .filter(|(k, f)| k.endpoint == endpoint && f.running.load(Ordering::SeqCst))
            .map(|(_, f)| *f)
            .collect();
        if running.is_empty() {
            return Crash::NotRunning(endpoint.to_owned());
        }
        for f in &running {
            // A permit, not a wake-up: a loop between two polls still gets it.
            f.crash.notify_one();
        }
        Crash::Injected {
            endpoint: endpoint.to_owned(),
            loops: running.len(),
        }
    }
}

// === impl Registration ===

impl Registration {
    /// The switch, for the loop's plan.
    pub fn fault(&self) -> Arc<LoopFault> {
        Arc::clone(&self.fault)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut loops = self.faults.loops();
        // A newer balancer may have registered the key since.
        if loops
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.fault))
        {
            loops.remove(&self.key);
        }
    }
}

// === impl LoopFault ===

impl LoopFault {
    /// Runs `body` (one run of the loop), marked as running, until it ends
    /// or a crash is injected: then it panics.
    pub async fn guard(&self, name: &str, body: impl Future<Output = ()>) {
        self.running.store(true, Ordering::SeqCst);
        let _running = Running(&self.running);
        tokio::select! {
            () = body => {}
            () = self.crash.notified() => crashed(name),
        }
    }
}

#[allow(clippy::panic)] // the point of fault injection
fn crashed(name: &str) {
    panic!("fault injected into the delivery loop of {name}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_crash_finds_its_backend_by_endpoint_or_index_and_only_if_it_runs() {
        let faults = Arc::new(Faults::default());
        let a = faults.register("traces", "traces", "http://a:4317");
        let b = faults.register("traces", "traces", "http://b:4317");
        assert_eq!(faults.crash("logs", "0"), Crash::NoPipeline);
        assert_eq!(
            faults.crash("traces", "2"),
            Crash::NoBackend(vec!["http://a:4317".into(), "http://b:4317".into()])
        );
        assert_eq!(
            faults.crash("traces", "1"),
            Crash::NotRunning("http://b:4317".into())
        );

        let fault = b.fault();
        let run = tokio::spawn(async move {
            fault
                .guard("traces@http://b:4317", std::future::pending::<()>())
                .await;
        });
        while !b.fault.running.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            faults.crash("traces", "http://b:4317"),
            Crash::Injected {
                endpoint: "http://b:4317".into(),
                loops: 1
            }
        );
        let e = run.await.err().unwrap();
        assert!(e.is_panic());
        assert!(!b.fault.running.load(Ordering::SeqCst));

        // A newer registration of the same key outlives the older one.
        let newer = faults.register("traces", "traces", "http://a:4317");
        drop(a);
        assert_eq!(
            faults.crash("traces", "http://a:4317"),
            Crash::NotRunning("http://a:4317".into())
        );
        drop((newer, b));
        assert_eq!(faults.crash("traces", "0"), Crash::NoPipeline);
    }
}
