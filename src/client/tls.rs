//! The rustls client configuration for HTTPS upstreams: trust roots, an optional
//! extra CA, an optional client certificate (mTLS). Every failure names the config
//! key and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Validated `[tls]`. Files are read when the client is built.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain and its key (PEM), both or neither.
    pub client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Why the TLS client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key} ({}): {reason}", path.display())]
    File {
        /// Config key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client key does not belong to the client certificate.
    #[error(
        "tls.client_key ({}) does not match the certificate in tls.client_cert ({}): {reason}",
        key.display(), cert.display()
    )]
    Mismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's explanation.
        reason: String,
    },
    /// rustls refused the protocol setup (should not happen with the ring provider).
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
}

/// Builds the client config: webpki roots, the system's roots, `ca_file`, and the
/// client identity when set. ALPN is set later by the connector.
pub fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The system store may be missing or partly unreadable on minimal images; the
    // webpki roots above still apply, so failures here are not fatal.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);

    if let Some(path) = &settings.ca_file {
        let certs = read_certs("tls.ca_file", path)?;
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::File {
                key: "tls.ca_file",
                path: path.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);

    match &settings.client_identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let chain = read_certs("tls.client_cert", cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::File {
                key: "tls.client_key",
                path: key_path.clone(),
                reason: pem_reason(&e, "private key"),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Mismatch {
                    cert: cert_path.clone(),
                    key: key_path.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File {
        key,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_reason(&e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(fail("contains no PEM certificate".into()));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls_pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        rustls_pki_types::pem::Error::NoItemsFound => format!("contains no PEM {what}"),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// A connector for leanproxy's own small HTTP/1.1 requests (the token
/// endpoint, webhook deliveries) to plain or TLS URLs, trusting `tls`.
pub(crate) fn http1_connector(
    tls: rustls::ClientConfig,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_names_key_and_path() {
        let settings = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            client_identity: None,
        };
        let err = client_config(&settings).unwrap_err().to_string();
        assert!(
            err.starts_with("tls.ca_file (/nonexistent/ca.pem): cannot read"),
            "{err}"
        );
    }

    #[test]
    fn file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not pem at all\n").unwrap();
        let settings = TlsSettings {
            ca_file: Some(path),
            client_identity: None,
        };
        let err = client_config(&settings).unwrap_err().to_string();
        assert!(err.contains("contains no PEM certificate"), "{err}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
        let settings = TlsSettings {
            ca_file: None,
            client_identity: Some((cert.clone(), key.clone())),
        };
        let err = client_config(&settings).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");

        std::fs::write(&key, a.key_pair.serialize_pem()).unwrap();
        client_config(&settings).unwrap();
    }
}
