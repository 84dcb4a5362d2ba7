//! Rebuild when migrations change: `sqlx::migrate!` embeds them, but cargo does not watch
//! folders outside the crate.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/server-sqlite");
    println!("cargo:rerun-if-changed=../migrations/server-postgres");
}
