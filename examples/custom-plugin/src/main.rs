//! A custom `sagesync` binary: the whole CLI, plus the `stdout_lines` plugin. Linking a plugin
//! crate is one line; without it, its registrations vanish.
//!
//! Run: `cargo run -p sagesync-example-custom-plugin --bin my-sagesync -- plugins`

use stdout_lines as _;

fn main() -> std::process::ExitCode {
    sagesync_cli::main()
}
