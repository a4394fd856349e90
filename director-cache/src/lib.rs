//! `director-cache` (being written).
