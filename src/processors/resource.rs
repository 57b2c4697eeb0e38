//! The `resource` processor (stub).
