//! DynamoDB traffic in front of moto: a [`Proxy`] that counts DynamoDB requests by operation
//! (`X-Amz-Target`), adds no latency of its own beyond a local hop, and can answer every
//! `throttle_every`-th request (a DynamoDB one) with HTTP 400
//! `ProvisionedThroughputExceededException`, as DynamoDB does when a partition is hot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::proxy::{Action, Response};

/// What the proxy counted.
#[derive(Default)]
pub struct Counters {
    /// DynamoDB requests forwarded, by operation (`UpdateItem`...).
    pub by_operation: Mutex<BTreeMap<String, usize>>,
    /// DynamoDB requests throttled.
    pub throttled: AtomicUsize,
    /// Every request that arrived.
    pub seen: AtomicUsize,
}

impl Counters {
    /// DynamoDB requests forwarded since the last [`Counters::reset`].
    pub fn total(&self) -> usize {
        self.by_operation.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
    /// DynamoDB requests forwarded by operation since the last [`Counters::reset`].
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.by_operation.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Forgets the counts by operation.
    pub fn reset(&self) {
        self.by_operation.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// DynamoDB's answer to a throttled request; `n` numbers it.
pub fn throughput_exceeded(n: usize) -> Response {
    let mut r = Response::json(
        400,
        "application/x-amz-json-1.0",
        &serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded."
        }),
    );
    r.headers.push(("x-amzn-RequestId".into(), format!("throttled-{n}")));
    r
}

/// The counting proxy.
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it counted.
    pub counters: Arc<Counters>,
    /// The proxy doing it (its log holds every request).
    pub proxy: crate::proxy::Proxy,
}

impl Proxy {
    /// Forwards to `127.0.0.1:upstream`; throttles every `throttle_every`-th request when it is
    /// a DynamoDB one (0: never).
    pub async fn start(upstream: u16, throttle_every: usize) -> Proxy {
        let proxy = crate::proxy::Proxy::start(upstream).await;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        proxy.set_rule(move |req| {
            let target = req.header("x-amz-target").unwrap_or("");
            let is_dynamo = target.starts_with("DynamoDB_");
            let n = c.seen.fetch_add(1, Ordering::SeqCst);
            if is_dynamo && throttle_every > 0 && n % throttle_every == throttle_every - 1 {
                c.throttled.fetch_add(1, Ordering::SeqCst);
                return Action::Respond(throughput_exceeded(n));
            }
            if is_dynamo {
                let op = target.rsplit('.').next().unwrap_or("").to_string();
                *c.by_operation.lock().unwrap_or_else(|e| e.into_inner()).entry(op).or_default() += 1;
            }
            Action::Forward
        });
        Proxy { port: proxy.port, counters, proxy }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
