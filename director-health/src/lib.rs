//! `director-health` (being written).
