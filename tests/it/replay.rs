//! Replaying the astro trace (being written).
