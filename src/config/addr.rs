//! Address text from the file → [`SocketAddr`], with a reason that says which part is
//! wrong (`"127.0.0.1:198222": port 198222 is out of range (0-65535)`).
//!
//! Listener and admin addresses must be IP literals; upstream servers may be names,
//! resolved once here, at load. This is the only place the configuration touches DNS,
//! and it runs on the loading thread, never a worker.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// An IP address and port to bind: `0.0.0.0:443`, `[::]:443`. `example` is shown in
/// the error when the text is not one.
pub(super) fn ip_port(s: &str, example: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = split(s, example)?;
    let port = port_number(s, port)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) => Err(format!(
            "{s:?}: {host:?} is not an IP address (e.g. {example})"
        )),
    }
}

/// An upstream server, `host:port`: an IP literal, or a name resolved now.
pub(super) fn resolve(s: &str) -> Result<SocketAddr, String> {
    const EXAMPLE: &str = "\"10.0.0.5:8080\" or \"backend.internal:8080\"";
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = split(s, EXAMPLE)?;
    let port = port_number(s, port)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolved to no address")),
        Err(e) => Err(format!("cannot resolve {s:?}: {e}")),
    }
}

/// `host:port` or `[ipv6]:port` → (host without brackets, port text).
fn split<'s>(s: &'s str, example: &str) -> Result<(&'s str, &'s str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: no ']' after the IPv6 address (e.g. \"[::1]:443\")"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: no port after the address (e.g. {example})"))?;
        return Ok((host, port));
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => {
            return Err(format!(
                "{s:?}: no port; an IPv6 address with a port is written in brackets, e.g. \"[::1]:443\""
            ));
        }
        Ok(IpAddr::V4(_)) => {
            return Err(format!("{s:?}: no port after the address (e.g. {example})"));
        }
        Err(_) => {}
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?}: no port; write host:port (e.g. {example})"));
    };
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "{s:?}: an IPv6 address with a port needs brackets: \"[{host}]:{port}\""
        ));
    }
    Ok((host, port))
}

fn port_number(s: &str, port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("{s:?}: no port after ':'"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: port {port:?} is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: port {port} is out of range (0-65535)"))
}
