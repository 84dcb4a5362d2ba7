//! Jemput server library.
