//! The project's own test harness, shipped in the binary as `seedgate loadgen`
//! and `seedgate sink`.
//!
//! The two halves agree on one scheme ([`records`]): every generated record
//! carries a unique sequence number, the loadgen writes the ranges the other
//! side acknowledged to an acked file ([`acked`]), and the sink counts the
//! seqs it received. Together they prove that nothing acknowledged was lost,
//! across restarts and faults. Both are libraries first, so integration tests
//! run them in-process against a seedgate child process.

pub mod acked;
pub mod loadgen;
pub mod records;
pub mod sink;
pub mod template;

/// Installs ring as the process-wide rustls provider (reqwest and tonic are
/// built without one) unless the process already chose a provider.
pub fn install_crypto_provider() {
    match rustls::crypto::ring::default_provider().install_default() {
        // Err: another provider is installed already, which serves as well.
        Ok(()) | Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
