//! What etcd checks in a client certificate beyond its chain: the allowed CN,
//! the allowed hostname, and, on the peer port, that the certificate names
//! the address the peer connects from. Pure: names are resolved by the caller.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use super::TlsInfo;

/// The names a certificate carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

pub fn names(der: &[u8]) -> Result<Names, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|err| format!("unreadable certificate: {err}"))?;
    // Go keeps the last CN of a subject that has several.
    let common_name = cert.subject().iter_common_name().last().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let mut names = Names { common_name, ..Names::default() };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.dns.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.ips.extend(ip.map(|ip| ip.to_canonical()));
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// etcd's `checkCRL`: no certificate the client sent has its serial in the
/// list (PEM or DER; the list's own signature is not checked, as in etcd).
pub fn not_revoked(crl: &[u8], presented: &[impl AsRef<[u8]>]) -> Result<(), String> {
    let der = match x509_parser::pem::parse_x509_pem(crl) {
        Ok((_, pem)) if pem.label.contains("CRL") => pem.contents,
        _ => crl.to_vec(),
    };
    let (_, list) = CertificateRevocationList::from_der(&der).map_err(|err| format!("unreadable CRL: {err}"))?;
    // Serials compared as numbers, as Go's big.Int: without DER's sign byte.
    let number = |serial: &[u8]| serial.iter().position(|b| *b != 0).map_or(Vec::new(), |at| serial[at..].to_vec());
    let revoked: Vec<Vec<u8>> = list.iter_revoked_certificates().map(|entry| number(entry.raw_serial())).collect();
    for cert in presented {
        let (_, cert) =
            X509Certificate::from_der(cert.as_ref()).map_err(|err| format!("unreadable certificate: {err}"))?;
        if revoked.contains(&number(cert.raw_serial())) {
            return Err(format!(
                "transport: certificate serial {} revoked",
                cert.raw_serial_as_string().replace(':', "")
            ));
        }
    }
    Ok(())
}

/// Go's `VerifyHostname`: an IP against the IP SANs, a name against the DNS
/// SANs, with a wildcard for the leftmost label.
pub fn matches_hostname(names: &Names, host: &str) -> bool {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return names.ips.contains(&ip);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.dns.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => pattern == host,
        }
    })
}

/// The checks of `info` on a client certificate from `remote`; `resolve` gives
/// the addresses of a DNS SAN.
pub fn check(
    names: &Names,
    info: &TlsInfo,
    remote: IpAddr,
    resolve: &dyn Fn(&str) -> Vec<IpAddr>,
) -> Result<(), String> {
    if let Some(cn) = &info.allowed_cn {
        if names.common_name.as_deref() != Some(cn.as_str()) {
            return Err(format!("CommonName authentication failed: want {cn:?}, got {:?}", names.common_name));
        }
    }
    if let Some(host) = &info.allowed_hostname {
        if !matches_hostname(names, host) {
            return Err(format!("client certificate authentication failed: not valid for hostname {host:?}"));
        }
    }
    let remote = remote.to_canonical();
    if info.check_client_san && !(names.ips.is_empty() && names.dns.is_empty()) {
        if names.ips.contains(&remote) {
            return Ok(());
        }
        // Wildcards match only a reverse lookup in etcd; Cairn does none, so
        // only plain names are resolved.
        let resolved = names
            .dns
            .iter()
            .filter(|dns| !dns.starts_with("*."))
            .any(|dns| resolve(dns).iter().any(|ip| ip.to_canonical() == remote));
        if !resolved {
            return Err(format!(
                "tls: {:?} does not match any of the certificate's addresses {:?} or DNSNames {:?}",
                remote.to_string(),
                names.ips,
                names.dns
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("signed").der().to_vec()
    }

    #[test]
    fn names_are_read_from_the_certificate() {
        let names = names(&cert("member-1", &["127.0.0.5", "node.local"])).expect("parsed");
        assert_eq!(names.common_name.as_deref(), Some("member-1"));
        assert_eq!(names.ips, vec!["127.0.0.5".parse::<IpAddr>().expect("ip")]);
        assert_eq!(names.dns, vec!["node.local".to_string()]);
        assert!(matches_hostname(&names, "node.local"));
        assert!(matches_hostname(&names, "127.0.0.5"));
        assert!(!matches_hostname(&names, "other.local"));
        let wildcard = Names { dns: vec!["*.example.com".into()], ..Names::default() };
        assert!(matches_hostname(&wildcard, "a.example.com"));
        assert!(!matches_hostname(&wildcard, "a.b.example.com"));
    }

    #[test]
    fn peer_checks_follow_etcd() {
        let names = names(&cert("member-1", &["127.0.0.5", "peer.local"])).expect("parsed");
        let no_dns = |_: &str| Vec::new();
        let here: IpAddr = "127.0.0.5".parse().expect("ip");
        let elsewhere: IpAddr = "127.0.0.9".parse().expect("ip");
        let san = TlsInfo { check_client_san: true, ..TlsInfo::default() };
        assert_eq!(check(&names, &san, here, &no_dns), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.5".parse().expect("ip");
        assert_eq!(check(&names, &san, mapped, &no_dns), Ok(()), "an IPv4 peer on a dual-stack listener");
        let wildcard = Names { dns: vec!["*.local".into()], ..Names::default() };
        let everything = |_: &str| vec![elsewhere];
        assert!(check(&wildcard, &san, elsewhere, &everything).is_err(), "wildcards are not resolved");
        assert!(check(&names, &san, elsewhere, &no_dns).is_err());
        let resolves = |dns: &str| if dns == "peer.local" { vec![elsewhere] } else { Vec::new() };
        assert_eq!(check(&names, &san, elsewhere, &resolves), Ok(()), "a DNS SAN resolving to the address");
        assert_eq!(check(&Names::default(), &san, elsewhere, &no_dns), Ok(()), "no SANs: nothing to check");
        let cn = TlsInfo { allowed_cn: Some("member-2".into()), ..TlsInfo::default() };
        assert!(check(&names, &cn, here, &no_dns).is_err());
        let cn = TlsInfo { allowed_cn: Some("member-1".into()), ..TlsInfo::default() };
        assert_eq!(check(&names, &cn, here, &no_dns), Ok(()));
        let host = TlsInfo { allowed_hostname: Some("other.local".into()), ..TlsInfo::default() };
        assert!(check(&names, &host, here, &no_dns).is_err());
    }
}
