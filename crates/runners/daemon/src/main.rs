//! `sagesyncd --config FILE`: the polling daemon (see the library).
#![recursion_limit = "256"]

fn main() -> std::process::ExitCode {
    sagesync_daemon::main()
}
