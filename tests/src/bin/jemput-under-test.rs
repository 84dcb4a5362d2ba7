//! The `jemput` server binary, built inside the tests crate so end-to-end tests can start the
//! real process (`CARGO_BIN_EXE_jemput-under-test`): same code, same entry point.

fn main() -> std::process::ExitCode {
    jemput_server::cli::main()
}
