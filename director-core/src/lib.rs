//! Director core (being written).
