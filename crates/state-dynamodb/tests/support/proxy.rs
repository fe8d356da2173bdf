//! A loopback HTTP/1.1 proxy in front of moto for DynamoDB traffic: it counts requests by
//! operation (`X-Amz-Target`), adds no latency of its own beyond a local hop, and can answer
//! every `throttle_every`-th DynamoDB request with HTTP 400
//! `ProvisionedThroughputExceededException`, as DynamoDB does when a partition is hot.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Counters {
    pub by_operation: Mutex<BTreeMap<String, usize>>,
    pub throttled: AtomicUsize,
    pub seen: AtomicUsize,
}

impl Counters {
    pub fn total(&self) -> usize {
        self.by_operation.lock().unwrap().values().sum()
    }
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.by_operation.lock().unwrap().clone()
    }
    pub fn reset(&self) {
        self.by_operation.lock().unwrap().clear();
    }
}

pub struct Proxy {
    pub port: u16,
    pub counters: Arc<Counters>,
}

type Head = (String, Vec<(String, String)>);

async fn head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut hs = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await? == 0 {
            return Ok(None);
        }
        let l = l.trim_end();
        if l.is_empty() {
            return Ok(Some((first, hs)));
        }
        if let Some((k, v)) = l.split_once(':') {
            hs.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

fn get<'a>(hs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
}

async fn body<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, hs: &[(String, String)], to_end: bool) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    match get(hs, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => {
            b.resize(n, 0);
            r.read_exact(&mut b).await?;
        }
        None if to_end => {
            r.read_to_end(&mut b).await?;
        }
        None => {}
    }
    Ok(b)
}

async fn serve(client: TcpStream, upstream: u16, every: usize, c: Arc<Counters>) -> std::io::Result<()> {
    let (rd, mut wr) = client.into_split();
    let mut rd = BufReader::new(rd);
    while let Some((first, hs)) = head(&mut rd).await? {
        let req_body = body(&mut rd, &hs, false).await?;
        let target = get(&hs, "x-amz-target").unwrap_or("").to_string();
        let is_dynamo = target.starts_with("DynamoDB_");
        let n = c.seen.fetch_add(1, Ordering::SeqCst);
        if is_dynamo && every > 0 && n % every == every - 1 {
            c.throttled.fetch_add(1, Ordering::SeqCst);
            let msg = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;
            let h = format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: throttled-{n}\r\nContent-Length: {}\r\n\r\n", msg.len());
            wr.write_all(h.as_bytes()).await?;
            wr.write_all(msg).await?;
            continue;
        }
        if is_dynamo {
            let op = target.rsplit('.').next().unwrap_or("").to_string();
            *c.by_operation.lock().unwrap().entry(op).or_default() += 1;
        }
        let up = TcpStream::connect(("127.0.0.1", upstream)).await?;
        let (urd, mut uwr) = up.into_split();
        let mut req = first.clone();
        for (k, v) in &hs {
            if !k.eq_ignore_ascii_case("connection") {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str("Connection: close\r\n\r\n");
        uwr.write_all(req.as_bytes()).await?;
        uwr.write_all(&req_body).await?;
        let mut urd = BufReader::new(urd);
        let Some((status, rhs)) = head(&mut urd).await? else {
            return Ok(());
        };
        let rb = body(&mut urd, &rhs, true).await?;
        let mut resp = status;
        for (k, v) in &rhs {
            if !["connection", "content-length", "transfer-encoding"].iter().any(|x| k.eq_ignore_ascii_case(x)) {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        resp.push_str(&format!("Content-Length: {}\r\n\r\n", rb.len()));
        wr.write_all(resp.as_bytes()).await?;
        wr.write_all(&rb).await?;
    }
    Ok(())
}

impl Proxy {
    /// Forwards to `127.0.0.1:upstream`; throttles every `throttle_every`-th DynamoDB request
    /// (0: never).
    pub async fn start(upstream: u16, throttle_every: usize) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, upstream, throttle_every, c.clone()));
            }
        });
        Proxy { port, counters }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
