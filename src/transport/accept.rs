//! The server-side setup of a client connection: the TLS handshake bounded by the
//! listener's handshake timeout, the handshake's facts ([`TlsInfo`], read before any
//! kernel switch), handshake metrics, and the move to kernel TLS with its fallback and
//! failure counts. Takes the pieces of a generation's listener, not the generation, so
//! it depends on nothing above the transport.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use monoio::time::Instant;
use tracing::debug;

use super::tls::{ClientVerify, Rejection, Selected, ServerConfigs, TlsInfo};
use super::{ClientStream, HandshakeError, HandshakeFailure, KtlsEvent, Offload, TlsEvents, ktls};
use crate::config::{KtlsMode, RecordLayer, VerifyClient};

/// Which record layer takes over from rustls after the handshake: the kernel (`ktls`),
/// else ringgate's own or rustls' (`userspace`).
#[derive(Debug, Clone, Copy)]
pub struct RecordLayers {
    pub ktls: KtlsMode,
    pub userspace: RecordLayer,
}

/// Accepts a TLS client on `tcp`: handshake within `handshake_timeout`, then the switch
/// to kernel TLS unless `layers.ktls` is off, else (`layers.userspace`) to ringgate's own
/// record layer (plaintext rustls decrypted before a switch goes to `rbuf`). Both take
/// the traffic secrets from rustls: `configs` must have `enable_secret_extraction` (as
/// [`super::tls::server_config`] sets it), or each switch fails and closes its connection. Every failure is counted in `metrics` and logged at debug level (a kTLS
/// failure after the secrets left rustls at warn). `None`: the connection is over.
pub async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    configs: ServerConfigs,
    layers: RecordLayers,
    handshake_timeout: Duration,
    rbuf: &mut BytesMut,
    metrics: &(impl TlsEvents + Clone + 'static),
) -> Option<(ClientStream, Rc<TlsInfo>)> {
    let m = metrics;
    let RecordLayers {
        ktls,
        userspace: records,
    } = layers;
    let started = Instant::now();
    // With configurations by SNI this one is replaced once the ClientHello is read.
    let first = configs.select(None).config.clone();
    let conn = match rustls::server::UnbufferedServerConnection::new(first) {
        Ok(c) => c,
        Err(e) => {
            m.handshake_failed(HandshakeFailure::Other);
            debug!(%peer, error = %e, "cannot start TLS session");
            return None;
        }
    };
    // Handshake records are read one at a time when another record layer follows
    // rustls, so no record after the handshake reaches rustls: the kernel or ringgate's
    // own layer opens it (and answers its faults).
    let exact_records = records == RecordLayer::Ringgate
        || (ktls != KtlsMode::Off && ktls::support().is_available());
    let mut s = ClientStream::tls(tcp, conn, exact_records);
    let handshake = s.handshake_with(Some(&configs));
    let sni = match monoio::time::timeout(handshake_timeout, handshake).await {
        Ok(Ok(sni)) => sni,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "handshake failed");
            if let HandshakeError::Tls(t) = &e
                && let Some(r) = Rejection::of(t)
            {
                m.client_cert_rejected(r);
            }
            let reason = match &e {
                HandshakeError::Tls(t) => HandshakeFailure::of_tls(t),
                HandshakeError::PlainHttp => HandshakeFailure::PlainHttp,
                HandshakeError::FragmentedHello => HandshakeFailure::FragmentedHello,
                _ => HandshakeFailure::Io,
            };
            m.handshake_failed(reason);
            return None;
        }
        Err(_) => {
            debug!(%peer, "handshake timed out");
            m.handshake_failed(HandshakeFailure::Timeout);
            return None;
        }
    };
    // Read before any kernel TLS switch: afterwards rustls no longer holds these facts.
    let mut info = TlsInfo::of(s.tls_conn()?, sni, started.elapsed());
    let selected = configs.select(info.sni.as_deref());
    let verdict = client_cert_verdict(&mut info, selected);
    if let Ok(Some(r)) = verdict {
        // Optional: the certificate is refused, the connection goes on unverified.
        m.client_cert_rejected(r);
    }
    if let Err(r) = verdict {
        m.client_cert_rejected(r);
        m.handshake_failed(HandshakeFailure::Certificate);
        debug!(%peer, resumed = info.resumed, reason = r.name(), "client certificate refused after the handshake; closed");
        return None;
    }
    m.handshake_done(&info);
    if ktls != KtlsMode::Off {
        match s.offload(rbuf, metrics) {
            Offload::Kernel => {
                info.ktls = true;
                m.ktls(KtlsEvent::Offloaded);
                return Some((s, log_tls(peer, info)));
            }
            Offload::Fallback(reason) => {
                m.ktls(KtlsEvent::Fallback(reason));
                ktls::log_fallback_once(reason);
            }
            Offload::Failed(e) => {
                m.ktls(KtlsEvent::Failed);
                tracing::warn!(%peer, error = %e, "switch to kernel TLS failed after the handshake; connection closed");
                return None;
            }
        }
    }
    if records == RecordLayer::Ringgate
        && let Err(e) = s.seal_in_userspace(rbuf)
    {
        tracing::warn!(%peer, error = %e, "switch to ringgate's record layer failed after the handshake; connection closed");
        return None;
    }
    Some((s, log_tls(peer, info)))
}

/// What the connection's client certificate comes to, where rustls did not decide it:
/// rustls does not ask the verifier on resumption, and under `verify = "optional"` it
/// lets any certificate through ([`crate::transport::tls::client_auth`]). A resumed
/// chain is checked again against the configuration in force (its CAs and CRLs; the
/// session may be from before a reload or a revocation, or from an optional connection
/// whose certificate failed), as is an optional connection's. `Err`: close the
/// connection (`required`); `Ok(Some(reason))`: an optional certificate failed, recorded
/// as `FAILED:reason`, and the connection goes on unverified.
fn client_cert_verdict(
    info: &mut TlsInfo,
    selected: &Selected,
) -> Result<Option<Rejection>, Rejection> {
    let Some(verifier) = &selected.verifier else {
        // No certificate asked for: a chain restored from an older session counts for
        // nothing here.
        info.client_verify = ClientVerify::None;
        info.client_identity = None;
        return Ok(None);
    };
    let required = selected.verify == VerifyClient::Required;
    if info.client_chain.is_empty() {
        return if required {
            Err(Rejection::NoCertificate)
        } else {
            Ok(None)
        };
    }
    if !info.resumed && required {
        return Ok(None); // rustls verified it during the handshake
    }
    if let Err(e) = verifier.check(&info.client_chain) {
        let r = Rejection::of(&e).unwrap_or(Rejection::Other);
        if required {
            return Err(r);
        }
        info.client_verify = ClientVerify::Failed(r.verify_text());
        info.client_identity = None;
        return Ok(Some(r));
    }
    Ok(None)
}

fn log_tls(peer: SocketAddr, info: TlsInfo) -> Rc<TlsInfo> {
    debug!(
        %peer,
        sni = info.sni.as_deref().unwrap_or("-"),
        alpn = %String::from_utf8_lossy(info.alpn.as_deref().unwrap_or(b"-")),
        version = info.version_name(),
        suite = ?info.cipher_suite,
        kx_group = info.kx_group.unwrap_or("-"),
        resumed = info.resumed,
        handshake_us = info.handshake_duration.as_micros() as u64,
        client_certs = info.client_chain.len(),
        ktls = info.ktls,
        "tls handshake done"
    );
    Rc::new(info)
}
