//! End-to-end tests: real servers driven by real clients, one binary of modules.

mod samod_interop;
