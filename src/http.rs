//! The HTTP surface (being written).
