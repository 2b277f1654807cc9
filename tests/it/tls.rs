//! HTTPS upstreams: a private CA, ALPN h2, and mTLS with a client certificate.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::support::{get, h1_client, OriginBuilder, Proxy};

/// A CA and a certificate it signed, as PEM and DER.
pub struct Pki {
    pub ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key_der: PrivateKeyDer<'static>,
    ca_der: CertificateDer<'static>,
}

pub fn pki(leaf_name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "leanproxy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![leaf_name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_der: leaf.der().clone(),
        leaf_key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        ca_der: ca.der().clone(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_config(server: &Pki, client_ca: Option<&Pki>) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(
            vec![server.leaf_der.clone()],
            server.leaf_key_der.clone_key(),
        )
        .unwrap()
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn https_upstream_with_private_ca_works_over_h2() {
    let server = pki("127.0.0.1");
    let origin = OriginBuilder::default()
        .tls(server_config(&server, None))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &server.ca_pem);
    let proxy = Proxy::in_front_of(&origin.url(), &format!("[tls]\nca_file = \"{ca}\"\n")).await;
    let r = get(&h1_client(), &proxy.url("/inspect?via=tls")).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let seen = r.json();
    assert_eq!(seen["query"], "via=tls");
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "ALPN chose h2 towards the upstream"
    );
    assert_eq!(
        seen["host"],
        serde_json::Value::Null,
        "h2 carries :authority, not Host"
    );
}

#[tokio::test]
async fn https_upstream_without_the_ca_is_a_clear_502() {
    let server = pki("127.0.0.1");
    let origin = OriginBuilder::default()
        .tls(server_config(&server, None))
        .start()
        .await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    let r = get(&h1_client(), &proxy.url("/echo")).await;
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(body["metadata"]["cause"], "tls", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("TLS handshake"), "{message}");
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn mtls_upstream_accepts_the_proxys_client_certificate() {
    let server = pki("127.0.0.1");
    let client = pki("leanproxy-client");
    let origin = OriginBuilder::default()
        .tls(server_config(&server, Some(&client)))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &server.ca_pem);
    // Lean ships the certificate with its chain appended; do the same.
    let chain = format!("{}{}", client.leaf_pem, client.ca_pem);
    let cert = write(dir.path(), "client.pem", &chain);
    let key = write(dir.path(), "client.key", &client.leaf_key_pem);

    let with_cert = Proxy::in_front_of(
        &origin.url(),
        &format!("[tls]\nca_file = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n"),
    )
    .await;
    let r = get(&h1_client(), &with_cert.url("/echo")).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));

    let without = Proxy::in_front_of(&origin.url(), &format!("[tls]\nca_file = \"{ca}\"\n")).await;
    let r = get(&h1_client(), &without.url("/echo")).await;
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["metadata"]["cause"], "tls", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("CertificateRequired"),
        "{body}"
    );
}

#[test]
fn key_not_matching_the_certificate_is_a_startup_error() {
    let a = pki("a");
    let b = pki("b");
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "a.pem", &a.leaf_pem);
    let key = write(dir.path(), "b.key", &b.leaf_key_pem);
    let settings = crate::support::settings(&format!(
        "[proxy]\nupstream = \"https://127.0.0.1:1\"\n[tls]\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n"
    ));
    let err = leanproxy::App::build(&settings)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(
        err.contains(&cert) && err.contains(&key),
        "names both files: {err}"
    );
}

#[test]
fn production_preset_accepts_leans_concatenated_chain_and_refuses_a_foreign_key() {
    let client = pki("leanproxy-client");
    let other = pki("someone-else");
    let dir = tempfile::tempdir().unwrap();
    // Certificate and chain concatenated into one file, as Lean's guide has it.
    let cert = write(
        dir.path(),
        "chain.pem",
        &format!("{}{}", client.leaf_pem, client.ca_pem),
    );
    let key = write(dir.path(), "client.key", &client.leaf_key_pem);
    let foreign = write(dir.path(), "other.key", &other.leaf_key_pem);
    for target in ["production-uae", "production-ksa"] {
        let config = |key: &str| {
            let path = dir.path().join(format!("{target}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[proxy]\nupstream = \"{target}\"\n[tls]\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n"
                ),
            )
            .unwrap();
            path.to_str().unwrap().to_string()
        };
        let (code, stdout, stderr) =
            crate::support::run_binary(&["check", "--config", &config(&key)]);
        assert_eq!(code, 0, "{target}: {stdout}{stderr}");
        let (code, _, stderr) =
            crate::support::run_binary(&["check", "--config", &config(&foreign)]);
        assert_eq!(code, 2, "{target}: {stderr}");
        assert!(
            stderr.contains("does not match") && stderr.contains(&foreign),
            "{stderr}"
        );
    }
}
