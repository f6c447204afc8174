//! TLS for the exchange (`certfile` / `keyfile` in the config), with rustls.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result, Status};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            Status::InvalidArgument,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// A TLS acceptor from PEM files; without `keyfile` the key is taken from
/// `certfile` (as Python's `load_cert_chain`).
pub(crate) fn acceptor(certfile: &Path, keyfile: Option<&Path>) -> Result<TlsAcceptor> {
    let cert_pem = read(certfile)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::new(
                Status::InvalidArgument,
                format!("invalid certificate PEM in {}: {e}", certfile.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("no certificate found in {}", certfile.display()),
        ));
    }
    let key_path = keyfile.unwrap_or(certfile);
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::new(
            Status::InvalidArgument,
            format!("no usable private key in {}: {e}", key_path.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::new(Status::InvalidArgument, format!("TLS configuration: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
