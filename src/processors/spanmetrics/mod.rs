//! Span metrics aggregation (stub).
