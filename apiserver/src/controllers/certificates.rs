//! kube-controller-manager's csrapproving and csrsigning controllers. The
//! approver approves a kubelet's client certificate request when a
//! SubjectAccessReview says its requester may create `nodeclient` (or, for
//! its own node, `selfnodeclient`) requests; the signer issues approved
//! requests for kubelets and API server clients with the cluster CA.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use super::Context;
use crate::certificates::{self, Signer, APISERVER_CLIENT_SIGNER, KUBELET_CLIENT_SIGNER};
use crate::client::writes::Op;
use crate::client::{self, Write};

fn has_condition(request: &CertificateSigningRequest, kind: &str) -> bool {
    let conditions = request.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == kind)
}

fn issued(request: &CertificateSigningRequest) -> bool {
    request.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty())
}

fn requested(request: &CertificateSigningRequest) -> Option<certificates::Requested> {
    certificates::parse_request(&request.spec.request.0).ok()
}

/// The subresources whose `create` permission approves this request, tried
/// in kube's order: `selfnodeclient` when the requester is the node it names.
pub fn approval_checks(request: &CertificateSigningRequest) -> Vec<(&'static str, &'static str)> {
    if issued(request) || has_condition(request, "Approved") || has_condition(request, "Denied") {
        return Vec::new();
    }
    if request.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Vec::new();
    }
    let Some(requested) = requested(request) else { return Vec::new() };
    if certificates::kubelet_client_problem(&requested, request.spec.usages.as_deref().unwrap_or_default()).is_some() {
        return Vec::new();
    }
    let mut checks = Vec::new();
    if request.spec.username.as_deref() == Some(requested.common_name.as_str()) {
        checks.push(("selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview."));
    }
    checks.push(("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."));
    checks
}

/// The request with one more condition, for the approval or status subresource.
fn with_condition(request: &CertificateSigningRequest, kind: &str, reason: &str, message: &str) -> Value {
    let mut object = client::to_json(request).unwrap_or_default();
    let at = client::time_text(client::now());
    let condition = json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": at, "lastTransitionTime": at,
    });
    match object["status"]["conditions"].as_array_mut() {
        Some(conditions) => conditions.push(condition),
        None => object["status"]["conditions"] = json!([condition]),
    }
    object
}

fn replace(request: &CertificateSigningRequest, object: Value, subresource: &'static str) -> Write {
    let name = request.metadata.name.clone().unwrap_or_default();
    Write::new::<CertificateSigningRequest>("", Op::Replace { name, object, subresource: Some(subresource) })
}

async fn allowed(ctx: &Context, request: &CertificateSigningRequest, subresource: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: request.spec.username.clone(),
            uid: request.spec.uid.clone(),
            groups: request.spec.groups.clone(),
            extra: request.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(crate::resources::CERTIFICATES_GROUP.into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                version: Some("*".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    match reviews.create(&PostParams::default(), &review).await {
        Ok(answer) => answer.status.is_some_and(|s| s.allowed),
        Err(error) => {
            tracing::warn!(%error, "a SubjectAccessReview for a certificate request failed");
            false
        }
    }
}

pub async fn approve_pass(ctx: Arc<Context>) -> Vec<Write> {
    let mut writes = Vec::new();
    for request in ctx.caches.certificate_requests.state() {
        for (subresource, message) in approval_checks(&request) {
            if allowed(&ctx, &request, subresource).await {
                let object = with_condition(&request, "Approved", "AutoApproved", message);
                writes.push(replace(&request, object, "approval"));
                break;
            }
        }
    }
    writes
}

/// Issues every approved request for a signer this controller-manager runs:
/// the certificate, or a Failed condition saying why not.
pub fn sign(
    requests: &[Arc<CertificateSigningRequest>],
    signer: &Signer,
    now: jiff::Timestamp,
    longest: Duration,
) -> Vec<Write> {
    let mut writes = Vec::new();
    for request in requests {
        let pending = has_condition(request, "Approved")
            && !has_condition(request, "Denied")
            && !has_condition(request, "Failed")
            && !issued(request);
        let signer_name = request.spec.signer_name.as_str();
        if !pending || (signer_name != KUBELET_CLIENT_SIGNER && signer_name != APISERVER_CLIENT_SIGNER) {
            continue;
        }
        let usages = request.spec.usages.clone().unwrap_or_default();
        let outcome = match requested(request) {
            None => Err("the request does not parse".to_string()),
            Some(asked) => {
                let problem = if signer_name == KUBELET_CLIENT_SIGNER {
                    certificates::kubelet_client_problem(&asked, &usages)
                } else {
                    certificates::apiserver_client_problem(&asked, &usages)
                };
                problem.map_or(Ok(asked), Err)
            }
        };
        let wanted = request.spec.expiration_seconds.map(|s| Duration::from_secs(s.max(600) as u64));
        let lasts = wanted.map_or(longest, |w| w.min(longest));
        let object = match outcome.and_then(|asked| signer.sign(&asked, &usages, now, lasts).map_err(|e| e.to_string()))
        {
            Ok(pem) => {
                let mut object = client::to_json(request.as_ref()).unwrap_or_default();
                object["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
                object
            }
            Err(problem) => with_condition(request, "Failed", "SignerValidationFailure", &problem),
        };
        writes.push(replace(request, object, "status"));
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::{request_for, Profile, NODES_GROUP};

    fn request(username: &str, node: &str, usages: &[&str], conditions: &[&str]) -> Arc<CertificateSigningRequest> {
        let profile = Profile {
            common_name: format!("system:node:{node}"),
            organizations: vec![NODES_GROUP.into()],
            ..Profile::default()
        };
        let (pem, _) = request_for(&profile).expect("request");
        let conditions: Vec<Value> = conditions.iter().map(|c| json!({"type": c, "status": "True"})).collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("csr-{node}"), "resourceVersion": "7"},
                "spec": {
                    "request": base64::engine::general_purpose::STANDARD.encode(pem),
                    "signerName": KUBELET_CLIENT_SIGNER,
                    "usages": usages,
                    "username": username,
                },
                "status": {"conditions": conditions},
            }))
            .expect("a request"),
        )
    }

    const CLIENT: &[&str] = &["digital signature", "client auth"];

    #[test]
    fn t10_a_kubelet_request_is_checked_for_self_then_node_client_and_others_not_at_all() {
        let own = request("system:node:n1", "n1", CLIENT, &[]);
        assert_eq!(approval_checks(&own).iter().map(|c| c.0).collect::<Vec<_>>(), vec!["selfnodeclient", "nodeclient"]);
        let bootstrap = request("system:bootstrap:abcdef", "n1", CLIENT, &[]);
        assert_eq!(approval_checks(&bootstrap).iter().map(|c| c.0).collect::<Vec<_>>(), vec!["nodeclient"]);
        assert!(approval_checks(&request("system:bootstrap:abcdef", "n1", &["server auth"], &[])).is_empty());
        assert!(approval_checks(&request("system:bootstrap:abcdef", "n1", CLIENT, &["Denied"])).is_empty());
        assert!(approval_checks(&request("system:bootstrap:abcdef", "n1", CLIENT, &["Approved"])).is_empty());
    }

    #[test]
    fn t11_the_signer_issues_approved_requests_and_fails_bad_ones() {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let ca = Signer::generate("ca", now).expect("ca");
        let approved = request("system:bootstrap:abcdef", "n1", CLIENT, &["Approved"]);
        let pending = request("system:bootstrap:abcdef", "n2", CLIENT, &[]);
        let bad = request("system:bootstrap:abcdef", "n3", &["client auth", "server auth"], &["Approved"]);
        let year = Duration::from_secs(365 * 24 * 3600);
        let writes = sign(&[approved, pending, bad], &ca, now, year);
        assert_eq!(writes.len(), 2, "the pending request waits");
        let Op::Replace { name, object, subresource } = &writes[0].op else { panic!("a replace") };
        assert_eq!((name.as_str(), *subresource), ("csr-n1", Some("status")));
        let pem = base64::engine::general_purpose::STANDARD
            .decode(object["status"]["certificate"].as_str().unwrap_or_default())
            .expect("base64");
        assert!(String::from_utf8_lossy(&pem).contains("BEGIN CERTIFICATE"));
        assert_eq!(object["metadata"]["resourceVersion"], "7", "written against the version read");
        let Op::Replace { object, .. } = &writes[1].op else { panic!("a replace") };
        let failed = &object["status"]["conditions"][1];
        assert_eq!(
            (failed["type"].as_str(), failed["reason"].as_str()),
            (Some("Failed"), Some("SignerValidationFailure"))
        );
        assert_eq!(failed["message"], "usages did not match [client auth digital signature key encipherment]");
    }
}
