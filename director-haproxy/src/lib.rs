//! `director-haproxy`: HAProxy-compatible statistics and runtime socket for Director.
//!
//! This crate will render the cluster registry of `director-core` as HAProxy's stats CSV and
//! monitor page on the admin listener, and speak HAProxy's runtime API on a UNIX socket (see
//! `ARCHITECTURE.md`). It is empty until the HAProxy-compatibility issue lands: nothing here is
//! usable yet, and nothing pretends to be.
