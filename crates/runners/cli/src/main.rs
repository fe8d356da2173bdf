//! `sagesync`: the command-line runner (see the library for everything it does).
#![recursion_limit = "256"]

fn main() -> std::process::ExitCode {
    sagesync_cli::main()
}
