//! Ports for tests and benches that listen.

/// A TCP port free on `ip` now: bound, read and released. Another process
/// could take it before the caller binds it again; on a test machine
/// nothing else does.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
        .port()
}
