//! `bootstrap`: the sagesync Lambda function for the `provided.al2023` runtime.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sagesync_lambda::App;
use serde_json::Value;

fn deadline(ctx: &lambda_runtime::Context) -> Option<std::time::Instant> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    let left = ctx.deadline.checked_sub(now_ms)?;
    Some(std::time::Instant::now() + std::time::Duration::from_millis(left))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
    if let Err(errors) = sagesync_core::registry::check_unique() {
        let msg = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        return Err(msg.into());
    }
    let app = match App::from_env() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "configuration error");
            return Err(e.to_string().into());
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move { app.handle(ev.payload, deadline(&ev.context)).await })).await
}
