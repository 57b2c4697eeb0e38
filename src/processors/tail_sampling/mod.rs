//! The `tail_sampling` policies (stub).
