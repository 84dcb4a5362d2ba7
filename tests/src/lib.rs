//! Test support: link emulator, process helpers.
