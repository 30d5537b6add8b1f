//! Certificates: what a CertificateSigningRequest asks for and whether it is a
//! kubelet's client certificate (kube's `ValidateKubeletClientCSR`), signing
//! one with the cluster CA as kube-controller-manager's csrsigning does, and
//! the CA and certificates `cairn-kube up` makes. Pure: files are read and
//! written by the callers, the time is passed in.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateSigningRequestDer;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of any client certificate for the API server.
pub const APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The group every kubelet's certificate names.
pub const NODES_GROUP: &str = "system:nodes";
/// A kubelet's user name is this and its node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotARequest,
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Sign(String),
}

/// What a certificate request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// DNS names, emails, IPs and URIs in the subjectAltName extension.
    pub alt_names: usize,
    der: Vec<u8>,
}

/// Reads a PEM request and checks its signature, as the API server does on create.
pub fn parse_request(pem: &[u8]) -> Result<Requested, CertError> {
    let der = CertificateSigningRequestDer::from_pem_slice(pem).map_err(|_| CertError::NotARequest)?;
    let der = der.as_ref().to_vec();
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| CertError::Parse(e.to_string()))?;
    request.verify_signature().map_err(|_| CertError::Parse("the request's signature does not verify".into()))?;
    let subject = &request.certification_request_info.subject;
    // One value per name part, each a string: what is checked is then all the
    // certificate can say (a second CN would otherwise be the one signed).
    if subject.iter().any(|rdn| rdn.iter().count() != 1) || subject.iter_common_name().count() > 1 {
        return Err(CertError::Parse("the subject must name one common name and one value per part".into()));
    }
    let text = |v: &x509_parser::x509::AttributeTypeAndValue| {
        v.as_str().map(String::from).map_err(|_| CertError::Parse("a subject value is not a string".into()))
    };
    let common_name = subject.iter_common_name().next().map(text).transpose()?.unwrap_or_default();
    let organizations = subject.iter_organization().map(text).collect::<Result<Vec<_>, _>>()?;
    let mut alt_names = 0;
    for extension in request.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension {
            alt_names += san.general_names.len();
        }
    }
    Ok(Requested { common_name, organizations, alt_names, der })
}

/// Why a request is not a kubelet's client certificate, in kube's words; None when it is.
pub fn kubelet_client_problem(requested: &Requested, usages: &[String]) -> Option<String> {
    if requested.organizations != [NODES_GROUP] {
        return Some("subject organization is not system:nodes".into());
    }
    if requested.alt_names > 0 {
        return Some("subjectAltNames are not allowed".into());
    }
    if !requested.common_name.starts_with(NODE_USER_PREFIX) {
        return Some("subject common name does not begin with system:node:".into());
    }
    let mut given: Vec<&str> = usages.iter().map(String::as_str).collect();
    given.sort_unstable();
    given.dedup();
    let with_rsa = ["client auth", "digital signature", "key encipherment"];
    if given != with_rsa && given != ["client auth", "digital signature"] {
        return Some(format!("usages did not match [{}]", with_rsa.join(" ")));
    }
    None
}

/// Why a request is not an API server client certificate
/// (`kubernetes.io/kube-apiserver-client`), in kube's words; None when it is.
pub fn apiserver_client_problem(requested: &Requested, usages: &[String]) -> Option<String> {
    if requested.organizations.iter().any(|o| o == "system:masters") {
        return Some(
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed".into(),
        );
    }
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if let Some(usage) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Some(format!("invalid usage for client certificate: {usage}"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Some("missing required usage for client certificate: client auth".into());
    }
    None
}

/// The cluster CA, as `--cluster-signing-cert-file` and `--cluster-signing-key-file` give it.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// A certificate to issue: who it names and what it is for.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// DNS names and IP addresses.
    pub alt_names: Vec<String>,
    pub server: bool,
    pub client: bool,
}

/// A new key (ECDSA P-256, as kubelets make) and a request for `profile` signed with it: (request, key) in PEM.
pub fn request_for(profile: &Profile) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(|e| CertError::Sign(e.to_string()))?;
    let request = params_for(profile)?.serialize_request(&key).map_err(|e| CertError::Sign(e.to_string()))?;
    Ok((request.pem().map_err(|e| CertError::Sign(e.to_string()))?, key.serialize_pem()))
}

fn params_for(profile: &Profile) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, profile.common_name.as_str());
    for organization in &profile.organizations {
        name.push(DnType::OrganizationName, organization.as_str());
    }
    params.distinguished_name = name;
    for alt in &profile.alt_names {
        params.subject_alt_names.push(match alt.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(alt.clone().try_into().map_err(|e| CertError::Sign(format!("{alt}: {e}")))?),
        });
    }
    Ok(params)
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

/// How far back a certificate's validity starts, for clocks that differ (kube's backdate).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

impl Signer {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Signer, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Parse(format!("the CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| CertError::Parse(format!("the CA certificate: {e}")))?;
        Ok(Signer { issuer, cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() })
    }

    /// A new self-signed CA named `common_name`, valid for ten years from `now`.
    pub fn generate(common_name: &str, now: jiff::Timestamp) -> Result<Signer, CertError> {
        let key = KeyPair::generate().map_err(|e| CertError::Sign(e.to_string()))?;
        let mut params = params_for(&Profile { common_name: common_name.into(), ..Profile::default() })?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, now, Duration::from_secs(10 * 365 * 24 * 3600))?;
        let cert = params.self_signed(&key).map_err(|e| CertError::Sign(e.to_string()))?;
        let key_pem = key.serialize_pem();
        Ok(Signer { issuer: Issuer::new(params, key), cert_pem: cert.pem(), key_pem })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A new key and a certificate for `profile`: (certificate, key) in PEM.
    pub fn issue(
        &self,
        profile: &Profile,
        now: jiff::Timestamp,
        duration: Duration,
    ) -> Result<(String, String), CertError> {
        let key = KeyPair::generate().map_err(|e| CertError::Sign(e.to_string()))?;
        let mut params = params_for(profile)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if profile.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if profile.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        set_validity(&mut params, now, duration)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| CertError::Sign(e.to_string()))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A certificate for the request: its subject and key, the usages the
    /// CertificateSigningRequest names, valid from `now` less the backdate for
    /// `duration`, as the csrsigning controller issues it.
    pub fn sign(
        &self,
        requested: &Requested,
        usages: &[String],
        now: jiff::Timestamp,
        duration: Duration,
    ) -> Result<String, CertError> {
        let request = CertificateSigningRequestParams::from_der(&requested.der.as_slice().into())
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let mut params = request.params.clone();
        // The subject signed is the one checked, built afresh.
        let checked = Profile {
            common_name: requested.common_name.clone(),
            organizations: requested.organizations.clone(),
            ..Profile::default()
        };
        params.distinguished_name = params_for(&checked)?.distinguished_name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
        params.extended_key_usages = usages.iter().filter_map(|u| extended_key_usage(u)).collect();
        set_validity(&mut params, now, duration)?;
        let signed = CertificateSigningRequestParams { params, public_key: request.public_key };
        let certificate = signed.signed_by(&self.issuer).map_err(|e| CertError::Sign(e.to_string()))?;
        Ok(certificate.pem())
    }
}

/// Valid from `now` less the backdate for `duration`, with a random serial.
fn set_validity(params: &mut CertificateParams, now: jiff::Timestamp, duration: Duration) -> Result<(), CertError> {
    let to_time = |t: jiff::Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|e| CertError::Sign(e.to_string()))
    };
    let backdate = jiff::SignedDuration::try_from(BACKDATE).map_err(|e| CertError::Sign(e.to_string()))?;
    let lasts = jiff::SignedDuration::try_from(duration).map_err(|e| CertError::Sign(e.to_string()))?;
    params.not_before = to_time(now - backdate)?;
    params.not_after = to_time(now.checked_add(lasts).map_err(|e| CertError::Sign(e.to_string()))?)?;
    params.serial_number = Some(SerialNumber::from_slice(uuid::Uuid::new_v4().as_bytes()));
    Ok(())
}

fn key_usage(usage: &str) -> Option<KeyUsagePurpose> {
    Some(match usage {
        "digital signature" => KeyUsagePurpose::DigitalSignature,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        "content commitment" => KeyUsagePurpose::ContentCommitment,
        "key agreement" => KeyUsagePurpose::KeyAgreement,
        "cert sign" => KeyUsagePurpose::KeyCertSign,
        "crl sign" => KeyUsagePurpose::CrlSign,
        _ => return None,
    })
}

fn extended_key_usage(usage: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match usage {
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
        "email protection" => ExtendedKeyUsagePurpose::EmailProtection,
        "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
