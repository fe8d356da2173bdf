//! SageMaker throttling in front of moto: a [`Proxy`] that answers a share of SageMaker requests
//! (`X-Amz-Target: SageMaker.*`) with `ThrottlingException` (HTTP 400, awsJson 1.1 error body),
//! as SageMaker does under load, and forwards everything else.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::proxy::{Action, Proxy, Request, Response};

/// SageMaker's answer to a throttled request; `n` numbers it.
pub fn throttling_exception(n: usize) -> Response {
    let mut r = Response::aws_error(400, "ThrottlingException", "Rate exceeded");
    r.headers.push(("x-amzn-RequestId".into(), format!("throttled-{n}")));
    r
}

fn is_sagemaker(req: &Request) -> bool {
    req.header("x-amz-target").is_some_and(|t| t.starts_with("SageMaker."))
}

/// Throttles every `every`-th request when it is a SageMaker one (requests counted in arrival
/// order, whatever their kind).
pub struct Throttler {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// SageMaker requests throttled so far.
    pub throttled: Arc<AtomicUsize>,
    /// Requests forwarded so far.
    pub forwarded: Arc<AtomicUsize>,
    /// The proxy doing it (its log holds every request).
    pub proxy: Proxy,
}

impl Throttler {
    /// Throttles every `every`-th request (a SageMaker one) to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16, every: usize) -> Throttler {
        let proxy = Proxy::start(upstream).await;
        let (throttled, forwarded) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (th, fw) = (throttled.clone(), forwarded.clone());
        proxy.set_rule(move |req| {
            if is_sagemaker(req) && every > 0 && req.seq % every == every - 1 {
                th.fetch_add(1, Ordering::SeqCst);
                return Action::Respond(throttling_exception(req.seq));
            }
            fw.fetch_add(1, Ordering::SeqCst);
            Action::Forward
        });
        Throttler { port: proxy.port, throttled, forwarded, proxy }
    }
}

/// Throttles a random share of SageMaker requests, set in per mille and changeable while it runs;
/// the same seed gives the same sequence of rolls (one per request, whatever its kind).
pub struct RandomThrottler {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The share of SageMaker requests throttled, per mille.
    pub permille: Arc<AtomicU32>,
    /// SageMaker requests throttled so far.
    pub throttled: Arc<AtomicUsize>,
    /// Requests forwarded so far.
    pub forwarded: Arc<AtomicUsize>,
    /// The proxy doing it (its log holds every request).
    pub proxy: Proxy,
}

impl RandomThrottler {
    /// Throttles `permille`/1000 of the SageMaker requests to `127.0.0.1:upstream`, drawn from
    /// `seed`.
    pub async fn start(upstream: u16, seed: u64, permille: u32) -> RandomThrottler {
        let proxy = Proxy::start(upstream).await;
        let share = Arc::new(AtomicU32::new(permille));
        let (throttled, forwarded) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let rng = Mutex::new(fastrand::Rng::with_seed(seed ^ 0x7468_726f_7474_6c65));
        let (pm, th, fw) = (share.clone(), throttled.clone(), forwarded.clone());
        proxy.set_rule(move |req| {
            let roll = rng.lock().unwrap_or_else(|e| e.into_inner()).u32(0..1000);
            if is_sagemaker(req) && roll < pm.load(Ordering::SeqCst) {
                let n = th.fetch_add(1, Ordering::SeqCst);
                return Action::Respond(throttling_exception(n));
            }
            fw.fetch_add(1, Ordering::SeqCst);
            Action::Forward
        });
        RandomThrottler { port: proxy.port, permille: share, throttled, forwarded, proxy }
    }
}
