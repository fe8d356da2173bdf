//! A loopback HTTP/1.1 proxy in front of moto that answers a share of SageMaker requests with
//! `ThrottlingException` (HTTP 400, awsJson 1.1 error body), as SageMaker does under load.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub struct Throttler {
    pub port: u16,
    pub throttled: Arc<AtomicUsize>,
    pub forwarded: Arc<AtomicUsize>,
}

async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<(String, Vec<(String, String)>)>> {
    let mut first = String::new();
    if r.read_line(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first, headers)))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

async fn handle(
    client: TcpStream,
    upstream: u16,
    every: usize,
    counter: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (rd, mut wr) = client.into_split();
    let mut rd = BufReader::new(rd);
    while let Some((first, headers)) = read_head(&mut rd).await? {
        let len: usize = header(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        let is_sagemaker = header(&headers, "x-amz-target").is_some_and(|t| t.starts_with("SageMaker."));
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if is_sagemaker && n % every == every - 1 {
            throttled.fetch_add(1, Ordering::SeqCst);
            let msg = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            let head = format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: throttled-{n}\r\nContent-Length: {}\r\n\r\n", msg.len());
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(msg).await?;
            continue;
        }
        forwarded.fetch_add(1, Ordering::SeqCst);
        let up = TcpStream::connect(("127.0.0.1", upstream)).await?;
        let (urd, mut uwr) = up.into_split();
        let mut req = first.clone();
        for (k, v) in &headers {
            if !k.eq_ignore_ascii_case("connection") {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str("Connection: close\r\n\r\n");
        uwr.write_all(req.as_bytes()).await?;
        uwr.write_all(&body).await?;
        let mut urd = BufReader::new(urd);
        let Some((status, rheaders)) = read_head(&mut urd).await? else { return Ok(()) };
        let mut rbody = Vec::new();
        match header(&rheaders, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(n) => {
                rbody.resize(n, 0);
                urd.read_exact(&mut rbody).await?;
            }
            None => {
                urd.read_to_end(&mut rbody).await?;
            }
        }
        let mut resp = status;
        for (k, v) in &rheaders {
            if !k.eq_ignore_ascii_case("connection")
                && !k.eq_ignore_ascii_case("content-length")
                && !k.eq_ignore_ascii_case("transfer-encoding")
            {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        resp.push_str(&format!("Content-Length: {}\r\n\r\n", rbody.len()));
        wr.write_all(resp.as_bytes()).await?;
        wr.write_all(&rbody).await?;
    }
    Ok(())
}

impl Throttler {
    /// Throttles every `every`-th SageMaker request.
    pub async fn start(upstream: u16, every: usize) -> Throttler {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counter = Arc::new(AtomicUsize::new(0));
        let throttled = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (t, f) = (throttled.clone(), forwarded.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(handle(s, upstream, every, counter.clone(), t.clone(), f.clone()));
            }
        });
        Throttler { port, throttled, forwarded }
    }
}
