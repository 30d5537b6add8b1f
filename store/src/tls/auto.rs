//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate for the
//! listen URLs' hosts, made once and kept in the data dir, as etcd's `SelfCert`.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SerialNumber};

use super::TlsError;

const DAYS_PER_YEAR: i64 = 365;

/// `(cert.pem, key.pem)` in `dir`; files already there are used as they are.
pub fn self_cert(dir: &Path, hosts: &[String], validity_years: u32) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let failed = |err: rcgen::Error| TlsError::SelfCert(err.to_string());
    let written = |path: &Path, source| TlsError::Read { path: path.to_path_buf(), source };
    // ring cannot sign with etcd's P-521; P-256 is what Go clients prefer anyway.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(failed)?;
    params.distinguished_name.push(DnType::OrganizationName, "etcd");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now
        .checked_add(time::Duration::days(DAYS_PER_YEAR * i64::from(validity_years)))
        .ok_or_else(|| TlsError::SelfCert(format!("a validity of {validity_years} years ends past year 9999")))?;
    let mut serial = [0u8; 16];
    rand_serial(&mut serial);
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(failed)?;
    std::fs::create_dir_all(dir).map_err(|source| written(dir, source))?;
    std::fs::write(&cert_path, cert.pem()).map_err(|source| written(&cert_path, source))?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|source| written(&key_path, source))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A positive serial from the OS's randomness, through ring.
fn rand_serial(serial: &mut [u8; 16]) {
    use ring::rand::SecureRandom;
    let _ = ring::rand::SystemRandom::new().fill(serial);
    serial[0] &= 0x7f;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_names_the_hosts_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixtures = dir.path().join("fixtures/client");
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let (cert, key) = self_cert(&fixtures, &hosts, 2).expect("generated");
        let pem = std::fs::read(&cert).expect("cert");
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|der: rustls::pki_types::CertificateDer<'static>| der.to_vec());
        let names = super::super::identity::names(&der.expect("pem")).expect("parsed");
        assert_eq!(names.ips, vec!["127.0.0.1".parse::<std::net::IpAddr>().expect("ip")]);
        assert_eq!(names.dns, vec!["localhost".to_string()]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
        // A second start keeps the same files.
        self_cert(&fixtures, &hosts, 2).expect("kept");
        assert_eq!(std::fs::read(&cert).expect("cert"), pem);
    }
}
