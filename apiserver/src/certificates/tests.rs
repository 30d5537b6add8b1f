use super::*;

fn node(name: &str) -> Profile {
    Profile {
        common_name: format!("{NODE_USER_PREFIX}{name}"),
        organizations: vec![NODES_GROUP.into()],
        client: true,
        ..Profile::default()
    }
}

fn usages(list: &[&str]) -> Vec<String> {
    list.iter().map(|u| u.to_string()).collect()
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("a valid time")
}

#[test]
fn t10_a_kubelets_request_is_recognised_and_others_are_told_why_not() {
    let (request, _key) = request_for(&node("n1")).expect("request");
    let requested = parse_request(request.as_bytes()).expect("parses");
    assert_eq!(requested.common_name, "system:node:n1");
    assert_eq!(kubelet_client_problem(&requested, &usages(&["digital signature", "client auth"])), None);
    assert_eq!(
        kubelet_client_problem(&requested, &usages(&["key encipherment", "digital signature", "client auth"])),
        None
    );
    assert_eq!(
        kubelet_client_problem(&requested, &usages(&["client auth", "server auth"])).as_deref(),
        Some("usages did not match [client auth digital signature key encipherment]")
    );
    let (other, _) =
        request_for(&Profile { common_name: "system:node:n1".into(), ..Profile::default() }).expect("request");
    let other = parse_request(other.as_bytes()).expect("parses");
    assert_eq!(
        kubelet_client_problem(&other, &usages(&["digital signature", "client auth"])).as_deref(),
        Some("subject organization is not system:nodes")
    );
    let (named, _) = request_for(&Profile { alt_names: vec!["n1.example".into()], ..node("n1") }).expect("request");
    let named = parse_request(named.as_bytes()).expect("parses");
    assert_eq!(named.alt_names, 1);
    assert!(kubelet_client_problem(&named, &usages(&["digital signature", "client auth"])).is_some());
    let (user, _) = request_for(&Profile { common_name: "alice".into(), ..node("x") }).expect("request");
    let user = parse_request(user.as_bytes()).expect("parses");
    assert_eq!(
        kubelet_client_problem(&user, &usages(&["digital signature", "client auth"])).as_deref(),
        Some("subject common name does not begin with system:node:")
    );
}

#[test]
fn t11_only_a_signed_certificate_request_is_taken() {
    let ca = Signer::generate("cairn-ca", now()).expect("ca");
    assert!(matches!(parse_request(ca.cert_pem().as_bytes()), Err(CertError::NotARequest)));
    assert!(matches!(parse_request(b"not pem"), Err(CertError::NotARequest)));
    let (request, _) = request_for(&node("n1")).expect("request");
    // One byte of the signed body changed: the signature no longer verifies.
    let der = CertificateSigningRequestDer::from_pem_slice(request.as_bytes()).expect("pem");
    let mut bytes = der.as_ref().to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    let tampered = pem_text("CERTIFICATE REQUEST", &bytes);
    assert!(parse_request(tampered.as_bytes()).is_err());
}

fn pem_text(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[test]
fn t12_the_signer_issues_what_was_asked_for_the_duration_given() {
    let ca = Signer::generate("cairn-ca", now()).expect("ca");
    let (request, _) = request_for(&node("n1")).expect("request");
    let requested = parse_request(request.as_bytes()).expect("parses");
    let hour = Duration::from_secs(3600);
    let pem = ca.sign(&requested, &usages(&["digital signature", "client auth"]), now(), hour).expect("signs");
    let der = tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default();
    assert_eq!(cn, "system:node:n1");
    let issuer = cert.issuer().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default();
    assert_eq!(issuer, "cairn-ca");
    assert_eq!(cert.validity().not_before.timestamp(), now().as_second() - 300);
    assert_eq!(cert.validity().not_after.timestamp(), now().as_second() + 3600);
    let eku = cert.extended_key_usage().expect("parses").expect("present").value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(!cert.is_ca());
    let ca_der =
        tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(ca_der.as_ref()).expect("x509");
    assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok(), "signed by the CA");
    let reloaded = Signer::from_pem(ca.cert_pem(), ca.key_pem()).expect("reloads");
    let again = reloaded.sign(&requested, &usages(&["client auth"]), now(), hour).expect("signs");
    let again = tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(again.as_bytes()).expect("pem");
    let (_, again) = x509_parser::parse_x509_certificate(again.as_ref()).expect("x509");
    assert!(again.verify_signature(Some(ca_cert.public_key())).is_ok(), "a reloaded CA signs as the first");
}

#[test]
fn t13_a_subject_with_two_common_names_is_refused() {
    // Made by `openssl req -subj "/CN=system:node:x/O=system:nodes/CN=system:kube-controller-manager"`:
    // a signer that kept the last CN would issue a controller-manager certificate.
    let pem = include_str!("two_common_names.csr");
    assert!(matches!(parse_request(pem.as_bytes()), Err(CertError::Parse(_))));
    let (request, _) = request_for(&node("n1")).expect("request");
    assert_eq!(parse_request(request.as_bytes()).expect("parses").organizations, vec![NODES_GROUP]);
}

#[test]
fn t14_api_server_client_requests_may_not_be_masters_or_serve() {
    let (request, _) = request_for(&Profile {
        common_name: "alice".into(),
        organizations: vec!["system:masters".into()],
        ..Profile::default()
    })
    .expect("request");
    let masters = parse_request(request.as_bytes()).expect("parses");
    assert!(apiserver_client_problem(&masters, &usages(&["client auth"])).is_some_and(|p| p.contains("system:masters")));
    let (request, _) = request_for(&Profile { common_name: "alice".into(), ..Profile::default() }).expect("request");
    let alice = parse_request(request.as_bytes()).expect("parses");
    assert_eq!(apiserver_client_problem(&alice, &usages(&["client auth", "digital signature"])), None);
    assert!(apiserver_client_problem(&alice, &usages(&["client auth", "cert sign"])).is_some());
    assert!(apiserver_client_problem(&alice, &usages(&["digital signature"])).is_some());
}
