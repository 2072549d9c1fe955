//! The thin async side of a callout: connects to one exchanger, runs the
//! sans-IO [`Probe`] over the socket (plain, then TLS after STARTTLS), keeps
//! the connect and per-command timeouts, and says `QUIT`.
//!
//! TLS here is opportunistic, as for any SMTP client that finds STARTTLS on an
//! exchanger (RFC 3207; Postfix's `smtp_tls_security_level = may`): the
//! certificate is not verified — it hides the conversation from passive
//! listeners and nothing more. The handshake's own signatures are checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::probe::{HostOutcome, Probe, ProbeRequest, QUIT, Step};

/// The most reply bytes buffered at once (the reader bounds each line to 4 KiB).
const MAX_BUFFER: usize = 64 * 1024;
/// The most read/reply rounds of one conversation (a probe needs about eight).
const MAX_ROUNDS: usize = 64;

/// How long each part of a probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to one exchanger (`callout_connect_timeout`).
    pub connect: Duration,
    /// Each reply, the TLS handshake and each write (`callout_command_timeout`).
    pub command: Duration,
}

/// One exchanger to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name from the MX record (for TLS SNI and the record), if any.
    pub name: Option<String>,
    /// Where to connect.
    pub addr: SocketAddr,
}

impl Host {
    /// `name[address]:port`, or `[address]:port` without a name.
    pub fn describe(&self) -> String {
        format!(
            "{}[{}]:{}",
            self.name.as_deref().unwrap_or(""),
            self.addr.ip(),
            self.addr.port()
        )
    }
}

/// Runs one probe against `host`; never fails, every failure is an outcome.
pub async fn probe_host(
    host: &Host,
    request: ProbeRequest,
    timeouts: Timeouts,
    tls: &Arc<ClientConfig>,
) -> HostOutcome {
    let mut stream = match timeout(timeouts.connect, TcpStream::connect(host.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            return HostOutcome::NextHost {
                code: None,
                text: format!("cannot connect: {error}"),
            };
        }
        Err(_) => {
            return HostOutcome::NextHost {
                code: None,
                text: format!("no connection within {} s", timeouts.connect.as_secs_f64()),
            };
        }
    };
    let _ = stream.set_nodelay(true);
    let mut probe = Probe::new(request);
    let mut buffer = Vec::new();
    match converse(&mut probe, &mut stream, &mut buffer, None, timeouts.command).await {
        Conversation::Done(outcome) => {
            quit(&mut stream, timeouts.command).await;
            outcome
        }
        Conversation::Broken(outcome) => outcome,
        Conversation::StartTls => {
            // Whatever came after the 220 came before the handshake: dropped.
            buffer.clear();
            let name = server_name(host);
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            let mut stream = match timeout(timeouts.command, connector.connect(name, stream)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return probe.tls_failed(&error.to_string()),
                Err(_) => return probe.tls_failed("timeout"),
            };
            let first = match probe.tls_started() {
                Step::Send(bytes) => Some(bytes),
                _ => None,
            };
            match converse(
                &mut probe,
                &mut stream,
                &mut buffer,
                first,
                timeouts.command,
            )
            .await
            {
                Conversation::Done(outcome) => {
                    quit(&mut stream, timeouts.command).await;
                    outcome
                }
                Conversation::Broken(outcome) => outcome,
                Conversation::StartTls => HostOutcome::NextHost {
                    code: None,
                    text: "STARTTLS twice".to_owned(),
                },
            }
        }
    }
}

/// How a run of the conversation over one stream ended.
enum Conversation {
    /// The probe is done; the connection is still good for QUIT.
    Done(HostOutcome),
    /// The connection failed (closed, timed out): no QUIT.
    Broken(HostOutcome),
    /// Start TLS now.
    StartTls,
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    probe: &mut Probe,
    stream: &mut S,
    buffer: &mut Vec<u8>,
    mut pending: Option<Vec<u8>>,
    command_timeout: Duration,
) -> Conversation {
    let secs = command_timeout.as_secs_f64();
    for _ in 0..MAX_ROUNDS {
        if let Some(bytes) = pending.take() {
            match timeout(command_timeout, stream.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return broken(format!("write failed: {error}")),
                Err(_) => return broken(format!("write not done within {secs} s")),
            }
        }
        let (used, step) = probe.handle_input(buffer);
        buffer.drain(..used.min(buffer.len()));
        match step {
            Some(Step::Send(bytes)) => pending = Some(bytes),
            Some(Step::StartTls) => return Conversation::StartTls,
            Some(Step::Done(outcome)) => return Conversation::Done(outcome),
            None => {
                if buffer.len() > MAX_BUFFER {
                    return broken("the server's reply is too long".to_owned());
                }
                let mut chunk = [0u8; 4096];
                match timeout(command_timeout, stream.read(&mut chunk)).await {
                    Ok(Ok(0)) => return Conversation::Broken(probe.handle_eof()),
                    Ok(Ok(n)) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    Ok(Err(error)) => return broken(format!("read failed: {error}")),
                    Err(_) => return broken(format!("no reply within {secs} s")),
                }
            }
        }
    }
    broken("the conversation did not end".to_owned())
}

fn broken(text: String) -> Conversation {
    Conversation::Broken(HostOutcome::NextHost { code: None, text })
}

/// QUIT and wait (bounded) for its reply or the close; errors do not matter now.
async fn quit<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, limit: Duration) {
    let limit = limit.min(Duration::from_secs(5));
    if let Ok(Ok(())) = timeout(limit, stream.write_all(QUIT)).await {
        let mut chunk = [0u8; 512];
        let _ = timeout(limit, stream.read(&mut chunk)).await;
    }
    let _ = timeout(limit, stream.shutdown()).await;
}

/// The name for SNI: the MX host's name when it is one, else its address.
fn server_name(host: &Host) -> ServerName<'static> {
    host.name
        .as_deref()
        .and_then(|name| ServerName::try_from(name.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(host.addr.ip().into()))
}

/// The TLS client of opportunistic STARTTLS: any certificate, checked handshake
/// signatures (see the module documentation).
pub fn opportunistic_tls() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Takes any certificate (opportunistic TLS), checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
