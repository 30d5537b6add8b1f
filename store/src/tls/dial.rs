//! The client side of the peer links: TLS to an `https://` peer URL with the
//! peer certificate as the client's, each connection with the files' current
//! contents.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::files::{self, Reloading};
use super::{TlsError, TlsInfo, TlsOptions};

pub struct PeerDialer {
    info: TlsInfo,
    options: TlsOptions,
    config: Reloading<ClientConfig>,
}

impl PeerDialer {
    pub fn new(info: TlsInfo, options: TlsOptions) -> Result<Arc<PeerDialer>, TlsError> {
        let paths = [&info.cert_file, &info.key_file, &info.trusted_ca_file].into_iter().flatten().cloned().collect();
        let dialer = PeerDialer { info, options, config: Reloading::new(paths) };
        dialer.config.get(|| dialer.build())?;
        Ok(Arc::new(dialer))
    }

    fn build(&self) -> Result<ClientConfig, TlsError> {
        let provider = self.options.provider.clone();
        let builder =
            ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&self.options.versions)?;
        // As etcd with --peer-auto-tls: self-signed peers cannot be verified.
        let builder = if self.info.auto_tls && self.info.trusted_ca_file.is_none() {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            // Without a trusted CA, the system's roots, as Go uses them.
            let roots = match &self.info.trusted_ca_file {
                Some(ca) => files::roots(ca)?,
                None => {
                    let mut roots = RootCertStore::empty();
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                    roots
                }
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.info.cert_file, &self.info.key_file) {
            (Some(cert), Some(key)) => builder.with_client_auth_cert(files::certs(cert)?, files::key(key)?)?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// A TLS connection to `host:port`, verified against `name` (the peer
    /// URL's host: a dial override changes where to connect, not whom).
    pub async fn dial(&self, name: &str, host: &str, port: u16) -> Result<TlsStream<TcpStream>, TlsError> {
        let config = self.config.get(|| self.build())?;
        let unbracket = |host: &str| host.trim_start_matches('[').trim_end_matches(']').to_string();
        let (name, host) = (unbracket(name), unbracket(host));
        let name = ServerName::try_from(name.clone()).map_err(|err| TlsError::Dial(format!("{name}: {err}")))?;
        let host = host.as_str();
        let tcp =
            TcpStream::connect((host, port)).await.map_err(|err| TlsError::Dial(format!("{host}:{port}: {err}")))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|err| TlsError::Dial(format!("TLS to {host}:{port}: {err}")))
    }
}

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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
