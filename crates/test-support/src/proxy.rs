//! A programmable HTTP/1.1 proxy on 127.0.0.1, in front of a test peer: it logs every request
//! (with its AWS operation from `X-Amz-Target`), and a rule decides, per request, whether to
//! forward it, rewrite the reply, answer itself, delay, hold until released, close the
//! connection, or never answer. It can also terminate TLS (with a certificate from
//! [`crate::tls::TestCa`]) in front of a plain-HTTP peer.
//!
//! One request-head parser for every test: [`read_head`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request as the proxy read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its number, from 0, in arrival order.
    pub seq: usize,
    /// `GET`, `POST`...
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    /// The AWS operation (`X-Amz-Target`'s part after the last `.`), else `METHOD path`
    /// without the query.
    pub fn operation(&self) -> String {
        match self.header("x-amz-target") {
            Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
            None => format!("{} {}", self.method, self.path.split('?').next().unwrap_or("")),
        }
    }
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A reply.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (without `Content-Length`, `Transfer-Encoding` and `Connection`: the proxy
    /// sets them).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A reply with a JSON body.
    pub fn json(status: u16, content_type: &str, body: &serde_json::Value) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.to_string().into_bytes() }
    }
    /// An AWS JSON-protocol error (`__type` and `message`), as DynamoDB and SageMaker send them.
    pub fn aws_error(status: u16, code: &str, message: &str) -> Response {
        Response::json(status, "application/x-amz-json-1.1", &serde_json::json!({"__type": code, "message": message}))
    }
}

/// What to do with one request.
pub enum Action {
    /// Forward it and pass the reply on.
    Forward,
    /// Forward it and pass on the reply as `f` rewrites it.
    Rewrite(Box<dyn FnOnce(Response) -> Response + Send>),
    /// Answer it without forwarding.
    Respond(Response),
    /// Wait, then forward.
    Delay(Duration),
    /// Wait until the notify fires (or 300 s), then forward.
    Hold(Arc<tokio::sync::Notify>),
    /// Close the connection without answering.
    Close,
    /// Keep the connection open and never answer.
    Silent,
}

/// A logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Arrival number.
    pub seq: usize,
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Operation (see [`Request::operation`]).
    pub operation: String,
    /// Its body.
    pub body: Vec<u8>,
    /// The status the client got (`None`: no answer, or not yet).
    pub status: Option<u16>,
}

type Rule = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

struct Shared {
    upstream: Mutex<u16>,
    rule: Mutex<Rule>,
    log: Mutex<Vec<Logged>>,
    seq: std::sync::atomic::AtomicUsize,
}

/// The proxy. It runs until dropped... with the runtime that started it.
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    tls: bool,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A plain-HTTP proxy in front of `127.0.0.1:upstream`, forwarding everything.
    pub async fn start(upstream: u16) -> Proxy {
        Self::launch(upstream, None).await
    }
    /// A proxy that terminates TLS with `cert` in front of plain-HTTP `127.0.0.1:upstream`.
    pub async fn start_tls(upstream: u16, cert: &crate::tls::ServerCert) -> Proxy {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(cert)));
        Self::launch(upstream, Some(acceptor)).await
    }

    async fn launch(upstream: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            rule: Mutex::new(Arc::new(|_: &Request| Action::Forward)),
            log: Mutex::new(Vec::new()),
            seq: Default::default(),
        });
        let s = shared.clone();
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(conn).await {
                                let _ = serve(stream, s).await;
                            }
                        }
                        None => {
                            let _ = serve(conn, s).await;
                        }
                    }
                });
            }
        });
        Proxy { port, tls: is_tls, shared }
    }

    /// `http://127.0.0.1:<port>` (or `https://localhost:<port>` with TLS).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }
    /// Replaces the rule.
    pub fn set_rule(&self, f: impl Fn(&Request) -> Action + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(f);
    }
    /// Forwards everything again.
    pub fn forward_all(&self) {
        self.set_rule(|_| Action::Forward);
    }
    /// Points the proxy at another upstream port (a restarted peer).
    pub fn set_upstream(&self, port: u16) {
        *self.shared.upstream.lock().unwrap_or_else(|e| e.into_inner()) = port;
    }
    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Forgets the log.
    pub fn clear(&self) {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    /// Requests so far by operation.
    pub fn by_operation(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for l in self.log() {
            *out.entry(l.operation).or_default() += 1;
        }
        out
    }
    /// Requests so far of one operation.
    pub fn count(&self, operation: &str) -> usize {
        self.log().iter().filter(|l| l.operation == operation).count()
    }
}

/// A header's value (case-insensitive name).
pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads a request or status line and its headers; `None` at a clean end of the stream.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<(String, Vec<(String, String)>)>> {
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
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some((first.trim_end().to_string(), headers)));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Reads a message body: `Content-Length`, chunked, or (for replies) to the end of the stream.
pub async fn read_body<R: AsyncBufRead + Unpin>(r: &mut R, headers: &[(String, String)], to_end: bool) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).await? == 0 || l.trim().is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..]).await?;
            let mut crlf = String::new();
            r.read_line(&mut crlf).await?;
        }
    }
    match header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).await?;
        }
        None if to_end => {
            r.read_to_end(&mut body).await?;
        }
        None => {}
    }
    Ok(body)
}

async fn write_response<W: AsyncWrite + Unpin>(w: &mut W, r: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        if !["content-length", "transfer-encoding", "connection"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
    w.write_all(head.as_bytes()).await?;
    w.write_all(&r.body).await?;
    w.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn forward(upstream: u16, req: &Request) -> std::io::Result<Response> {
    let up = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (urd, mut uwr) = up.into_split();
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if !["connection", "content-length", "transfer-encoding"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", req.body.len()));
    uwr.write_all(head.as_bytes()).await?;
    uwr.write_all(&req.body).await?;
    uwr.flush().await?;
    let mut urd = BufReader::new(urd);
    let Some((status_line, headers)) = read_head(&mut urd).await? else {
        return Err(std::io::Error::other("the upstream closed without a reply"));
    };
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(502);
    let body = read_body(&mut urd, &headers, true).await?;
    let headers = headers
        .into_iter()
        .filter(|(k, _)| !["content-length", "transfer-encoding", "connection"].iter().any(|h| k.eq_ignore_ascii_case(h)))
        .collect();
    Ok(Response { status, headers, body })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: Arc<Shared>) -> std::io::Result<()> {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    while let Some((first, headers)) = read_head(&mut rd).await? {
        let body = read_body(&mut rd, &headers, false).await?;
        let mut parts = first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let seq = shared.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let req = Request { seq, method, path, headers, body };
        let idx = {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(Logged {
                seq,
                at: Instant::now(),
                method: req.method.clone(),
                path: req.path.clone(),
                operation: req.operation(),
                body: req.body.clone(),
                status: None,
            });
            log.len() - 1
        };
        let rule = shared.rule.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let upstream = *shared.upstream.lock().unwrap_or_else(|e| e.into_inner());
        let reply = match rule(&req) {
            Action::Forward => forward(upstream, &req).await,
            Action::Rewrite(f) => forward(upstream, &req).await.map(f),
            Action::Respond(r) => Ok(r),
            Action::Delay(d) => {
                tokio::time::sleep(d).await;
                forward(upstream, &req).await
            }
            Action::Hold(n) => {
                let _ = tokio::time::timeout(Duration::from_secs(300), n.notified()).await;
                forward(upstream, &req).await
            }
            Action::Close => return Ok(()),
            Action::Silent => {
                // Never answer; keep reading so that the client sees a live connection.
                let mut sink = Vec::new();
                let _ = rd.read_to_end(&mut sink).await;
                return Ok(());
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => Response { status: 502, headers: vec![], body: format!("proxy: {e}").into_bytes() },
        };
        if let Some(l) = shared.log.lock().unwrap_or_else(|e| e.into_inner()).get_mut(idx) {
            l.status = Some(reply.status);
        }
        write_response(&mut wr, &reply).await?;
    }
    Ok(())
}
