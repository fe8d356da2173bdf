//! A custom `sagesync` binary: the CLI with the plugins it names and no others (here the
//! recorded source, the file sink, the memory ledger, and this crate's two sinks). Linking a
//! plugin crate is one line; without it, its registrations vanish.
//!
//! Run: `cargo run -p sagesync-example-custom-plugin --bin my-sagesync -- plugins`

use sagesync_plugins as _;
use stdout_lines as _;

fn main() -> std::process::ExitCode {
    sagesync_cli::main()
}
