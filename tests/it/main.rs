//! All integration tests in one binary (one link step, shared helpers).

mod config;
mod plan;
