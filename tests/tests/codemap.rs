//! `docs/ARCHITECTURE.md` must only name paths that exist: a codemap that points at moved or
//! deleted files misleads the next reader.

use std::path::Path;

#[test]
fn every_path_the_codemap_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let codemap =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let mut missing = Vec::new();
    for quoted in codemap.split('`').skip(1).step_by(2) {
        // `dir/file` or `dir/sub/`, as the project's pre-stop check reads them; `/v1/ws` is a
        // route and `src/` alone a folder named within its section.
        let is_path = !quoted.starts_with('/')
            && quoted.trim_end_matches('/').contains('/')
            && !quoted.contains(' ')
            && !quoted.contains(':')
            && !quoted.contains('*')
            && quoted
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c));
        if is_path && !root.join(quoted).exists() {
            missing.push(quoted.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing paths: {missing:?}"
    );
}
