//! The `jemput` binary.

fn main() -> std::process::ExitCode {
    jemput_server::cli::main()
}
