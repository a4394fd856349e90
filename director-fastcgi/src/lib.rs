//! `director-fastcgi` (being written).
