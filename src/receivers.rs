//! receivers (in progress).
