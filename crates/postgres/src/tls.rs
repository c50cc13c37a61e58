//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls (no
//! OpenSSL).
//!
//! | `ssl_mode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` | when the server offers it | no |
//! | `require` | always | no (as libpq: with `ssl_root_cert` set, the chain is checked, as `verify-ca`) |
//! | `verify-ca` | always | chain to `ssl_root_cert` (or the system's roots) |
//! | `verify-full` | always | chain, and the host name or IP address |
//!
//! `allow` is taken as `prefer`: it differs only for a server that refuses
//! a plain connection, which then fails where libpq would retry with TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mssql_pg_migrate_config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The TLS files of one PostgreSQL endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for `clientcert` logins.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl From<&mssql_pg_migrate_config::PgTls> for TlsFiles {
    fn from(c: &mssql_pg_migrate_config::PgTls) -> Self {
        TlsFiles { root_cert: c.ssl_root_cert.clone(), client_cert: c.ssl_cert.clone(), client_key: c.ssl_key.clone() }
    }
}

/// What the connection promises about the server's certificate, for the
/// health check's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// No TLS at all.
    Off,
    /// Encrypted, but any certificate is accepted.
    NotVerified,
    /// The chain is checked, the host name is not.
    Chain,
    /// The chain and the host name are checked.
    Full,
}

impl Verification {
    pub fn describe(self) -> &'static str {
        match self {
            Verification::Off => "not encrypted",
            Verification::NotVerified => "encrypted, certificate not verified",
            Verification::Chain => "encrypted, certificate chain verified (host name not checked)",
            Verification::Full => "encrypted, certificate and host name verified",
        }
    }
}

/// What `mode` (with `files`) checks.
pub fn verification(mode: SslMode, files: &TlsFiles) -> Verification {
    match mode {
        SslMode::Disable => Verification::Off,
        SslMode::Allow | SslMode::Prefer => Verification::NotVerified,
        SslMode::Require if files.root_cert.is_some() => Verification::Chain,
        SslMode::Require => Verification::NotVerified,
        SslMode::VerifyCa => Verification::Chain,
        SslMode::VerifyFull => Verification::Full,
    }
}

/// The rustls client configuration for `mode`. `setting` names the config
/// section (`target`) for messages.
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, naming the
/// key to fix.
pub fn client_config(mode: SslMode, files: &TlsFiles, setting: &str) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{setting}: TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verification(mode, files) {
        Verification::Full => webpki_verifier(files, setting, &provider)?,
        lenient => Arc::new(Lenient {
            chain: (lenient == Verification::Chain).then(|| webpki_verifier(files, setting, &provider)).transpose()?,
            algorithms: provider.signature_verification_algorithms,
        }),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, &format!("{setting}.ssl_cert"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{setting}.ssl_key: cannot read a private key from {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{setting}.ssl_cert/ssl_key: the certificate and key do not go together: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(format!("{setting}: set both ssl_cert and ssl_key, or neither")),
    }
}

fn read_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key}: {} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Chain (and name) checks against `ssl_root_cert`, or the system's roots.
fn webpki_verifier(
    files: &TlsFiles,
    setting: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    match &files.root_cert {
        Some(path) => {
            for cert in read_certificates(path, &format!("{setting}.ssl_root_cert"))? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{setting}.ssl_root_cert: {} holds an unusable CA: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(format!(
                    "{setting}.ssl_root_cert is not set and the system has no CA certificates; \
                     name the CA file that signed the server's certificate"
                ));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| format!("{setting}.ssl_root_cert: {e}"))
}

/// The modes that check less than rustls does: `verify-ca` checks the
/// chain (`chain`) but accepts any name; `prefer` and `require` without a
/// CA accept any certificate (`chain: None`). The handshake's signatures
/// are always checked, so the session key is the one the certificate's
/// holder made.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A connection error's words plus what to change, for TLS failures.
/// rustls names its errors both in Debug (`UnknownIssuer`) and in words
/// (`certificate not valid for name`); both are matched.
pub fn explain(message: &str, host: &str, setting: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    // A bad signature: a trusted CA of the same name did not sign it.
    let hint = if says(&["unknownissuer", "unknown issuer", "badsignature", "bad signature"]) {
        format!(
            "the server's certificate is not signed by a CA this connection trusts; set {setting}.ssl_root_cert \
             to the CA file that signed it (or ssl_mode: require to encrypt without verifying)"
        )
    } else if says(&["notvalidforname", "not valid for name"]) {
        format!(
            "the server's certificate is not for {host}; connect by a name the certificate lists, or use \
             {setting}.ssl_mode: verify-ca to check only the chain"
        )
    } else if says(&["expired"]) {
        format!("the server's certificate has expired; renew it on the server ({setting}.ssl_mode decides the checks)")
    } else if says(&["notvalidyet", "not valid yet"]) {
        "the server's certificate is not valid yet; check the server's and this machine's clocks".to_owned()
    } else if says(&["server does not support tls"]) {
        format!(
            "the server does not offer TLS; enable ssl on the server, or set {setting}.ssl_mode: prefer \
             (encrypt when offered) or disable"
        )
    } else if says(&["certificate required", "certificaterequired", "requires a valid client certificate"]) {
        format!("the server wants a client certificate; set {setting}.ssl_cert and {setting}.ssl_key")
    } else {
        return None;
    };
    Some(format!("{message} ({hint})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_promises_what_libpq_does() {
        let none = TlsFiles::default();
        let ca = TlsFiles { root_cert: Some("ca.pem".into()), ..TlsFiles::default() };
        assert_eq!(verification(SslMode::Disable, &ca), Verification::Off);
        assert_eq!(verification(SslMode::Prefer, &ca), Verification::NotVerified);
        assert_eq!(verification(SslMode::Require, &none), Verification::NotVerified);
        assert_eq!(verification(SslMode::Require, &ca), Verification::Chain, "libpq checks the chain given a CA");
        assert_eq!(verification(SslMode::VerifyCa, &none), Verification::Chain);
        assert_eq!(verification(SslMode::VerifyFull, &none), Verification::Full);
        assert_eq!(Verification::NotVerified.describe(), "encrypted, certificate not verified");
    }

    #[test]
    fn tls_failures_say_what_to_change() {
        let unknown = explain("invalid peer certificate: UnknownIssuer", "db", "target").unwrap();
        assert!(unknown.contains("target.ssl_root_cert"), "{unknown}");
        let name = explain("invalid peer certificate: NotValidForName", "db.example", "target").unwrap();
        assert!(name.contains("not for db.example") && name.contains("verify-ca"), "{name}");
        assert!(
            explain("error performing TLS handshake: server does not support TLS", "h", "target")
                .unwrap()
                .contains("ssl_mode: prefer")
        );
        assert_eq!(explain("password authentication failed", "h", "target"), None);
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let half = TlsFiles { client_cert: Some("c.pem".into()), ..TlsFiles::default() };
        let err = client_config(SslMode::Require, &half, "target").unwrap_err();
        assert!(err.contains("ssl_cert and ssl_key"), "{err}");
        let missing = TlsFiles { root_cert: Some("/nonexistent/ca.pem".into()), ..TlsFiles::default() };
        let err = client_config(SslMode::VerifyFull, &missing, "target").unwrap_err();
        assert!(err.contains("target.ssl_root_cert") && err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
