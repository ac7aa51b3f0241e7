//! Status and readiness shared between the daemon and the HTTP surface (being written).
