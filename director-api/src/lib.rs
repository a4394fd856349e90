//! `director-api`: Director's JSON admin API.
//!
//! This crate will sit on the admin listener, beside `director-haproxy`, and read and mutate the
//! cluster registry of `director-core` (see `ARCHITECTURE.md`). It is empty until the admin-API
//! issue lands: nothing here is usable yet, and nothing pretends to be.

pub mod history;
pub mod ui;
