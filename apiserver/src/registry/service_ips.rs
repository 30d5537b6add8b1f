//! ClusterIP allocation from `--service-cluster-ip-range`, kept in the store
//! as kube-apiserver keeps it (a RangeAllocation bitmap at
//! `/registry/ranges/serviceips`) and changed only by compare-and-swap, so
//! replicas never hand out one address twice.

use std::net::Ipv4Addr;

use base64::Engine;
use serde_json::{json, Value};

use super::Registry;
use crate::error::{ApiError, FieldError};
use crate::meta;
use crate::resources::{of, Kind};
use crate::storage::Swap;

const ATTEMPTS: usize = 64;

#[derive(Clone, Debug)]
pub struct ServiceIps {
    base: u32,
    size: u32,
    cidr: String,
}

pub fn parse_cidr(text: &str) -> Result<ServiceIps, String> {
    let (ip, bits) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{text:?} is not an IPv4 CIDR"))?;
    let bits: u32 = bits.parse().map_err(|_| format!("{text:?} has no prefix length"))?;
    if !(8..=30).contains(&bits) {
        return Err(format!("{text:?}: the prefix length must be between 8 and 30"));
    }
    let size = 1u32 << (32 - bits);
    let base = u32::from(ip) & !(size - 1);
    Ok(ServiceIps { base, size, cidr: format!("{}/{bits}", Ipv4Addr::from(base)) })
}

impl ServiceIps {
    /// Offsets that may be handed out: not the network address, not broadcast.
    fn usable(&self, offset: u32) -> bool {
        offset > 0 && offset < self.size - 1
    }

    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let value = u32::from(ip);
        (value >= self.base && value < self.base + self.size).then(|| value - self.base).filter(|o| self.usable(*o))
    }

    fn bitmap(&self, stored: Option<&Value>) -> Vec<u8> {
        let mut bits = stored
            .and_then(|s| s.get("data"))
            .and_then(Value::as_str)
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .unwrap_or_default();
        bits.resize(self.size.div_ceil(8) as usize, 0);
        bits
    }

    fn document(&self, bits: &[u8]) -> Value {
        json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {"creationTimestamp": null},
            "range": self.cidr,
            "data": base64::engine::general_purpose::STANDARD.encode(bits),
        })
    }

    /// Sets `spec.clusterIP(s)` of a new service, allocating one unless it is
    /// headless or ExternalName. Returns the address to release if the create fails.
    pub async fn allocate(&self, registry: &Registry, service: &mut Value) -> Result<Option<Ipv4Addr>, ApiError> {
        let kind = meta::str_at(service, &["spec", "type"]).unwrap_or("ClusterIP");
        let requested = meta::str_at(service, &["spec", "clusterIP"]).unwrap_or("").to_string();
        if kind == "ExternalName" || requested == "None" {
            if requested == "None" {
                service["spec"]["clusterIPs"] = json!(["None"]);
            }
            return Ok(None);
        }
        let wanted = if requested.is_empty() {
            None
        } else {
            let invalid = |detail: &str| {
                ApiError::invalid(
                    of(Kind::Service),
                    meta::name(service),
                    vec![FieldError::invalid("spec.clusterIPs", requested.as_str(), detail)],
                )
            };
            let ip: Ipv4Addr = requested.parse().map_err(|_| invalid("must be a valid IP address"))?;
            let offset = self.offset(ip).ok_or_else(|| {
                invalid(&format!("failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}", self.cidr))
            })?;
            Some((ip, offset))
        };
        let ip = self.take(registry, wanted, meta::name(service)).await?;
        service["spec"]["clusterIP"] = json!(ip.to_string());
        service["spec"]["clusterIPs"] = json!([ip.to_string()]);
        service["spec"]["ipFamilies"] = json!(["IPv4"]);
        service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        Ok(Some(ip))
    }

    async fn take(
        &self,
        registry: &Registry,
        wanted: Option<(Ipv4Addr, u32)>,
        name: &str,
    ) -> Result<Ipv4Addr, ApiError> {
        let key = registry.keys.service_ip_range();
        for _ in 0..ATTEMPTS {
            let stored = registry.storage.get(&key).await?;
            let mut bits = self.bitmap(stored.as_ref().map(|s| &s.object));
            let is_set = |bits: &[u8], o: u32| bits[(o / 8) as usize] & (1 << (o % 8)) != 0;
            let offset = match wanted {
                Some((ip, offset)) => {
                    if is_set(&bits, offset) {
                        return Err(ApiError::invalid(
                            of(Kind::Service),
                            name,
                            vec![FieldError::invalid(
                                "spec.clusterIPs",
                                ip.to_string(),
                                format!("failed to allocate IP {ip}: provided IP is already allocated"),
                            )],
                        ));
                    }
                    offset
                }
                None => {
                    // A random start spreads concurrent allocators over the range.
                    let start = uuid::Uuid::new_v4().as_u128() as u32 % self.size;
                    let free = (0..self.size)
                        .map(|i| (start + i) % self.size)
                        .find(|o| self.usable(*o) && *o != 1 && !is_set(&bits, *o));
                    free.ok_or_else(|| {
                        ApiError::Internal(format!("failed to allocate a serviceIP: range is full ({})", self.cidr))
                    })?
                }
            };
            bits[(offset / 8) as usize] |= 1 << (offset % 8);
            let expected = stored.as_ref().map(|s| s.mod_revision).unwrap_or(0);
            if let Swap::Done(_) = registry.storage.swap(&key, expected, &self.document(&bits), None).await? {
                return Ok(Ipv4Addr::from(self.base + offset));
            }
        }
        Err(ApiError::Internal("failed to allocate a serviceIP: too many concurrent allocations".into()))
    }

    pub async fn release(&self, registry: &Registry, ip: Ipv4Addr) {
        let Some(offset) = self.offset(ip) else { return };
        let key = registry.keys.service_ip_range();
        for _ in 0..ATTEMPTS {
            let Ok(Some(stored)) = registry.storage.get(&key).await else { return };
            let mut bits = self.bitmap(Some(&stored.object));
            bits[(offset / 8) as usize] &= !(1 << (offset % 8));
            match registry.storage.swap(&key, stored.mod_revision, &self.document(&bits), None).await {
                Ok(Swap::Done(_)) | Err(_) => return,
                Ok(Swap::Lost(_)) => continue,
            }
        }
    }

    pub async fn release_of(&self, registry: &Registry, service: &Value) {
        if let Some(ip) = meta::str_at(service, &["spec", "clusterIP"]).and_then(|s| s.parse().ok()) {
            self.release(registry, ip).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let ips = parse_cidr("10.0.0.0/24").expect("test data");
        assert_eq!(ips.first(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ips.offset(Ipv4Addr::new(10, 0, 0, 255)), None, "broadcast is not usable");
        assert_eq!(ips.offset(Ipv4Addr::new(10, 0, 1, 1)), None);
        assert!(parse_cidr("10.0.0.0").is_err());
        assert_eq!(parse_cidr("10.0.0.7/24").expect("test data").cidr, "10.0.0.0/24");
    }
}
