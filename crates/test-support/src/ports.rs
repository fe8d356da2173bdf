//! A port held for a whole test instead of picked, released and reused later (when another test
//! thread may have taken it).

/// A port on 127.0.0.1 that is bound (with `SO_REUSEPORT`) but not listening: connections to it
/// are refused for as long as this lives, and no other socket can take it unless it also asks
/// for `SO_REUSEPORT` — which is how a test peer started with `--reuse-port` takes the port
/// over (the kernel hands connections only to the listening socket).
pub struct HeldPort {
    _socket: tokio::net::TcpSocket,
    /// The port.
    pub port: u16,
}

impl HeldPort {
    /// Binds a fresh port on 127.0.0.1 and holds it.
    pub fn new() -> HeldPort {
        let s = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        s.set_reuseport(true).expect("SO_REUSEPORT");
        s.bind("127.0.0.1:0".parse().expect("an address")).expect("bind 127.0.0.1:0");
        let port = s.local_addr().expect("the bound address").port();
        HeldPort { _socket: s, port }
    }
}
