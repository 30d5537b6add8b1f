//! Certificates for TLS tests, made with rcgen: a CA, the certificates it
//! signs (servers by IP, clients by CN), expired ones, and revocation lists;
//! and [`ClusterTls`], what a cluster with TLS on every link is started with.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

/// How long a certificate is valid, counted from now.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    Days(i64),
    /// Ended yesterday.
    Expired,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

/// A certificate authority whose files live in `dir`.
pub struct Ca {
    dir: PathBuf,
    /// The CA's certificate: what `--trusted-ca-file` names.
    pub ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    next_serial: Cell<u64>,
}

fn rcgen(err: rcgen::Error) -> anyhow::Error {
    anyhow::anyhow!("rcgen: {err}")
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Result<Ca> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = KeyPair::generate().map_err(rcgen)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.self_signed(&key).map_err(rcgen)?;
        let ca_file = dir.join(format!("{name}.crt"));
        std::fs::write(&ca_file, cert.pem())?;
        Ok(Ca { dir: dir.to_path_buf(), ca_file, issuer: Issuer::new(params, key), next_serial: Cell::new(1) })
    }

    /// A certificate for `cn` naming `sans` (IPs or DNS names), good for
    /// servers and clients alike, in `<file>.crt` and `<file>.key`.
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str], validity: Validity) -> Result<Issued> {
        let key = KeyPair::generate().map_err(rcgen)?;
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(rcgen)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match validity {
            Validity::Days(days) => (now - time::Duration::hours(1), now + time::Duration::days(days)),
            Validity::Expired => (now - time::Duration::days(30), now - time::Duration::days(1)),
        };
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen)?;
        let issued =
            Issued { cert: self.dir.join(format!("{file}.crt")), key: self.dir.join(format!("{file}.key")), serial };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }

    /// A revocation list of `revoked`, signed by this CA, in `<file>.crl` (PEM).
    pub fn revoke(&self, file: &str, revoked: &[&Issued]) -> Result<PathBuf> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|issued| RevokedCertParams {
                    serial_number: SerialNumber::from(issued.serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(rcgen)?;
        let path = self.dir.join(format!("{file}.crl"));
        std::fs::write(&path, crl.pem().map_err(rcgen)?)?;
        Ok(path)
    }
}

/// A cluster with TLS on every link: one CA, a certificate for the members'
/// loopback address (server and peer client), and one for clients.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub member: Issued,
    pub client: Issued,
}

impl ClusterTls {
    /// A CA and its certificates in `dir`, for members on `ip`.
    pub fn new(dir: &Path, ip: &str) -> Result<(Ca, ClusterTls)> {
        let ca = Ca::new(dir, "cairn-test-ca")?;
        let member = ca.issue("member", "member", &[ip, "localhost"], Validity::Days(7))?;
        let client = ca.issue("client", "client", &[], Validity::Days(7))?;
        let tls = ClusterTls { ca: ca.ca_file.clone(), member, client };
        Ok((ca, tls))
    }

    /// The settings of kubeadm's etcd, mTLS for clients and for peers, as the
    /// `ETCD_*` variables both etcd and cairn read: a member's own
    /// environment can then replace one of them.
    pub fn member_env(&self) -> Vec<(String, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        [
            ("ETCD_CERT_FILE", path(&self.member.cert)),
            ("ETCD_KEY_FILE", path(&self.member.key)),
            ("ETCD_TRUSTED_CA_FILE", path(&self.ca)),
            ("ETCD_CLIENT_CERT_AUTH", "true".to_string()),
            ("ETCD_PEER_CERT_FILE", path(&self.member.cert)),
            ("ETCD_PEER_KEY_FILE", path(&self.member.key)),
            ("ETCD_PEER_TRUSTED_CA_FILE", path(&self.ca)),
            ("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// etcdctl's flags for the client certificate.
    pub fn etcdctl_args(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client.cert.display()),
            format!("--key={}", self.client.key.display()),
        ]
    }

    pub fn client_options(&self) -> Result<etcd_client::TlsOptions> {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(read(&self.client.cert)?, read(&self.client.key)?))
            .timeout(Duration::from_secs(5)))
    }
}
