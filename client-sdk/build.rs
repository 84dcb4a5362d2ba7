//! Rebuilds when the embedded client migrations change (cargo does not watch that folder).
fn main() {
    println!("cargo:rerun-if-changed=../migrations/client");
}
