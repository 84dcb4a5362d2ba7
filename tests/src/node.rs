//! Runs the JS interop scripts in `tests/js` with the machine's Node.js.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// `tests/js`, where `npm ci` installed the pinned automerge-repo packages.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Whether the JS peers are installed; when not, JS tests skip with a message unless
/// `JEMPUT_REQUIRE_JS` is set (CI sets it).
pub fn js_peers_available(test: &str) -> bool {
    let installed = js_dir()
        .join("node_modules/@automerge/automerge-repo/package.json")
        .exists();
    if !installed {
        assert!(
            std::env::var_os("JEMPUT_REQUIRE_JS").is_none(),
            "{test}: JEMPUT_REQUIRE_JS is set but tests/js/node_modules is missing (run the install in tests/js/README.md)"
        );
        eprintln!("SKIPPED {test}: JS peers not installed (see tests/js/README.md)");
    }
    installed
}

/// Output of a finished script.
#[derive(Debug)]
pub struct ScriptOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node tests/js/<script> <args>` with a deadline.
pub async fn run_script(script: &str, args: &[&str], limit: Duration) -> ScriptOutput {
    let child = tokio::process::Command::new("node")
        .arg(js_dir().join(script))
        .args(args)
        .current_dir(js_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish within {limit:?}"))
        .expect("wait for node");
    ScriptOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
