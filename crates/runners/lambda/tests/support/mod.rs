//! This crate's own test helper: its `bootstrap` started against the Runtime API emulation.

use sagesync_test_support::lambda::{Function, Runtime};

/// Starts the `bootstrap` these tests were built with against `rt`, with the given extra
/// environment (see [`sagesync_test_support::lambda::start_function`]).
pub fn start_function(rt: &Runtime, env: &[(&str, String)]) -> Function {
    sagesync_test_support::lambda::start_function(env!("CARGO_BIN_EXE_bootstrap").as_ref(), rt, env)
}
