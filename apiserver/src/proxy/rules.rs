//! The rule table, pure: which ClusterIP:port leads to which ready endpoints,
//! and its `iptables-save` rendering with kube-proxy's chain names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::endpoints::SERVICE_NAME_LABEL;

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// `namespace/name:port-name`, as kube-proxy names a service port.
    pub service_port: String,
    pub frontend: SocketAddr,
    pub protocol: String,
    pub ready: Vec<SocketAddr>,
}

/// One rule per ClusterIP service port, with its ready endpoints sorted.
pub fn rules(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) else { continue };
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let mine: Vec<&Arc<EndpointSlice>> = slices
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(&namespace))
            .filter(|s| s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name))
            .collect();
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.clone().unwrap_or_default();
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let mut ready: Vec<SocketAddr> = Vec::new();
            for slice in &mine {
                let target = slice
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| {
                        p.name.clone().unwrap_or_default() == port_name
                            && p.protocol.clone().unwrap_or_else(|| "TCP".into()) == protocol
                    })
                    .and_then(|p| p.port);
                let Some(target) = target else { continue };
                for endpoint in &slice.endpoints {
                    if endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(true) {
                        continue;
                    }
                    for address in &endpoint.addresses {
                        if let Ok(ip) = address.parse::<IpAddr>() {
                            ready.push(SocketAddr::new(ip, target as u16));
                        }
                    }
                }
            }
            ready.sort();
            ready.dedup();
            rules.push(Rule {
                service_port: format!("{namespace}/{name}:{port_name}").trim_end_matches(':').to_string(),
                frontend: SocketAddr::new(ip, port.port as u16),
                protocol,
                ready,
            });
        }
    }
    rules.sort_by(|a, b| a.service_port.cmp(&b.service_port));
    rules
}

/// kube-proxy's chain suffix: base32 of a SHA-256, 16 characters.
fn chain(prefix: &str, input: &str) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(input.as_bytes());
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = String::new();
    for byte in digest.iter() {
        bits = (bits << 8) | u64::from(*byte);
        count += 8;
        while count >= 5 && out.len() < 16 {
            count -= 5;
            out.push(ALPHABET[((bits >> count) & 31) as usize] as char);
        }
    }
    format!("{prefix}-{out}")
}

pub fn iptables_save(rules: &[Rule]) -> String {
    let mut chains = vec![":KUBE-SERVICES - [0:0]".to_string()];
    let mut lines = Vec::new();
    for rule in rules {
        let protocol = rule.protocol.to_lowercase();
        let ip = rule.frontend.ip();
        let port = rule.frontend.port();
        if rule.ready.is_empty() {
            lines.push(format!(
                "-A KUBE-SERVICES -d {ip}/32 -p {protocol} -m comment --comment \"{} has no endpoints\" -m {protocol} --dport {port} -j REJECT",
                rule.service_port
            ));
            continue;
        }
        let service_chain = chain("KUBE-SVC", &format!("{}{}", rule.service_port, protocol));
        chains.push(format!(":{service_chain} - [0:0]"));
        lines.push(format!(
            "-A KUBE-SERVICES -d {ip}/32 -p {protocol} -m comment --comment \"{} cluster IP\" -m {protocol} --dport {port} -j {service_chain}",
            rule.service_port
        ));
        let n = rule.ready.len();
        for (i, endpoint) in rule.ready.iter().enumerate() {
            let endpoint_chain = chain("KUBE-SEP", &format!("{}{}{endpoint}", rule.service_port, protocol));
            chains.push(format!(":{endpoint_chain} - [0:0]"));
            let statistic = if i + 1 < n {
                format!(" -m statistic --mode random --probability {:.11}", 1.0 / (n - i) as f64)
            } else {
                String::new()
            };
            lines.push(format!(
                "-A {service_chain} -m comment --comment \"{} -> {endpoint}\"{statistic} -j {endpoint_chain}",
                rule.service_port
            ));
            lines.push(format!(
                "-A {endpoint_chain} -p {protocol} -m comment --comment \"{}\" -m {protocol} -j DNAT --to-destination {endpoint}",
                rule.service_port
            ));
        }
    }
    format!("*nat\n{}\n{}\nCOMMIT\n", chains.join("\n"), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn t10_ready_endpoints_of_a_service_port_become_one_rule_and_its_dnat_chains() {
        let service: Arc<Service> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "127.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
            .expect("service"),
        );
        let slice: Arc<EndpointSlice> = Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web-x", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.64.0.3"], "conditions": {"ready": true}},
                              {"addresses": ["127.64.1.2"], "conditions": {"ready": true}},
                              {"addresses": ["127.64.2.2"], "conditions": {"ready": false}}]}),
            )
            .expect("slice"),
        );
        let table = rules(&[service], &[slice]);
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].frontend, "127.96.0.10:80".parse().expect("addr"));
        assert_eq!(table[0].ready.len(), 2);
        let text = iptables_save(&table);
        assert!(
            text.contains("-d 127.96.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP\""),
            "{text}"
        );
        assert!(text.contains("--probability 0.50000000000"), "{text}");
        assert!(text.contains("DNAT --to-destination 127.64.1.2:8080"), "{text}");
        assert!(!text.contains("127.64.2.2"), "{text}");
    }
}
