//! TLS for the PostgreSQL front end: the server's rustls configuration (ring provider, ALPN
//! `postgresql`) loaded from PEM files, the connection stream that is either plain TCP or TLS
//! ([`PgStream`]), and the self-signed certificate `phalanx local` makes for itself.
//!
//! A client asks for TLS with an SSLRequest before its startup packet (the server answers `S`
//! and the handshake follows) or, from PostgreSQL 17 (`sslnegotiation=direct`), starts the TLS
//! handshake at once, naming ALPN `postgresql`; `server::negotiate` handles both. TLS 1.2 and
//! 1.3 are offered; client certificates are not asked for.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The ALPN protocol name of PostgreSQL (required for direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM {what}: {source}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the certificate in {cert} and the key in {key} cannot serve TLS: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The node's TLS server side.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    /// The certificate chain as PEM, for SCRAM channel binding.
    pub certificate_pem: Arc<Vec<u8>>,
}

impl ServerTls {
    /// Loads a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let certificate_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
            path: cert.to_owned(),
            source,
        })?;
        let chain = CertificateDer::pem_slice_iter(&certificate_pem)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|chain| {
                if chain.is_empty() {
                    Err(rustls_pki_types::pem::Error::NoItemsFound)
                } else {
                    Ok(chain)
                }
            })
            .map_err(|source| TlsError::Pem {
                path: cert.to_owned(),
                what: "certificate",
                source,
            })?;
        let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
            path: key.to_owned(),
            source,
        })?;
        let private_key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Pem {
                path: key.to_owned(),
                what: "private key",
                source,
            })?;
        let config_error = |source| TlsError::Config {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(config_error)?;
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate_pem: Arc::new(certificate_pem),
        })
    }
}

/// A client connection: plain TCP until (and unless) TLS is negotiated.
pub enum PgStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl PgStream {
    /// The ALPN protocol the TLS handshake agreed on.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            PgStream::Plain(_) => None,
            PgStream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            PgStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            PgStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            PgStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            PgStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where a self-signed pair lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `dir/cert.pem` and `dir/key.pem`: reused if both exist, else generated — a self-signed
/// ECDSA P-256 certificate for `localhost`, `127.0.0.1` and `::1`, the key readable by its
/// owner only (mode 0600). Returns whether it generated them.
pub fn ensure_self_signed(dir: &Path) -> Result<(CertificateFiles, bool), TlsError> {
    let files = CertificateFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok((files, false));
    }
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    params.subject_alt_names.extend([
        rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
        rcgen::SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ]);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "phalanx local");
    let key_pair = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&key_pair)?;
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    // The key first: a certificate without its key is never left behind as "both exist".
    write_new(&files.key, key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(write_error(&files.key))?;
    write_new(&files.cert, certificate.pem().as_bytes(), 0o644)
        .map_err(write_error(&files.cert))?;
    Ok((files, true))
}

/// Writes `path` through a temporary file created with `mode` (so the content is never
/// readable with wider permissions), fsynced, then renamed over it.
fn write_new(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_loads_and_keeps_its_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_dir = dir.path().join("tls");
        let (files, generated) = ensure_self_signed(&tls_dir).expect("generate");
        assert!(generated);
        let mode = std::fs::metadata(&files.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
        let first = std::fs::read(&files.cert).expect("cert");
        let (again, generated) = ensure_self_signed(&tls_dir).expect("reuse");
        assert!(!generated);
        assert_eq!(again, files);
        assert_eq!(std::fs::read(&files.cert).expect("cert"), first, "reused");
        let tls = ServerTls::load(&files.cert, &files.key).expect("loads");
        assert_eq!(tls.certificate_pem.as_slice(), first.as_slice());
    }

    #[test]
    fn unusable_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = ensure_self_signed(dir.path()).expect("generate");
        let missing = dir.path().join("missing.pem");
        let error = ServerTls::load(&missing, &files.key)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("missing.pem"), "{error}");
        // A key in the certificate's place.
        let error = ServerTls::load(&files.key, &files.key)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        // A key that does not belong to the certificate.
        let other = dir.path().join("other");
        let (other, _) = ensure_self_signed(&other).expect("generate");
        let error = ServerTls::load(&files.cert, &other.key)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("cannot serve TLS"), "{error}");
    }
}
