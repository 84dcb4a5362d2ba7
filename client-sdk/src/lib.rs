//! Jemput client SDK.
