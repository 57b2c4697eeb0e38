//! The seedgate command line.
fn main() {}
