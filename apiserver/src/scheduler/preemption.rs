//! Preemption as kube-scheduler's DefaultPreemption does it, pure: on each node
//! where evicting lower-priority pods could help, the fewest and least
//! important victims that make the pod fit; then the best node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::plugins::{self, Failure, NodeInfo};

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
}

/// The victims on one node, or None if evicting cannot make the pod fit.
fn victims_on(pod: &Pod, node: &NodeInfo, all: &[NodeInfo]) -> Option<Vec<Arc<Pod>>> {
    let mine = priority(pod);
    let (mut lower, keep): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) =
        node.pods.iter().cloned().partition(|p| priority(p) < mine && p.metadata.deletion_timestamp.is_none());
    if lower.is_empty() {
        return None;
    }
    let with = |pods: &[Arc<Pod>]| {
        let mut info = NodeInfo::new(node.node.clone());
        pods.iter().for_each(|p| info.add(p.clone()));
        info
    };
    let stripped = with(&keep);
    plugins::filter(pod, &stripped, all).ok()?;
    // Reprieve the most important victims first, while the pod still fits.
    lower.sort_by_key(|p| std::cmp::Reverse(priority(p)));
    let mut kept = keep;
    let mut victims = Vec::new();
    for candidate in lower {
        kept.push(candidate.clone());
        if plugins::filter(pod, &with(&kept), all).is_err() {
            kept.pop();
            victims.push(candidate);
        }
    }
    Some(victims)
}

/// The node to preempt on, or, if none, why: the postfilter message.
pub fn select(pod: &Pod, nodes: &[NodeInfo], failures: &[(String, Vec<Failure>)]) -> Result<Candidate, String> {
    let mut unhelpful = 0;
    let mut no_victims = 0;
    let mut best: Option<(Candidate, (i32, i64, usize))> = None;
    for (name, reasons) in failures {
        if reasons.iter().any(|f| !f.resolvable) {
            unhelpful += 1;
            continue;
        }
        let Some(node) = nodes.iter().find(|n| n.name() == name) else { continue };
        match victims_on(pod, node, nodes) {
            Some(victims) if !victims.is_empty() => {
                let rank = (
                    victims.iter().map(|v| priority(v)).max().unwrap_or(i32::MIN),
                    victims.iter().map(|v| i64::from(priority(v))).sum::<i64>(),
                    victims.len(),
                );
                if best.as_ref().is_none_or(|(_, r)| rank < *r) {
                    best = Some((Candidate { node: name.clone(), victims }, rank));
                }
            }
            _ => no_victims += 1,
        }
    }
    if let Some((candidate, _)) = best {
        return Ok(candidate);
    }
    let mut parts = Vec::new();
    if no_victims > 0 {
        parts.push(format!("{no_victims} No preemption victims found for incoming pod"));
    }
    if unhelpful > 0 {
        parts.push(format!("{unhelpful} Preemption is not helpful for scheduling"));
    }
    parts.sort();
    Err(format!("preemption: 0/{} nodes are available: {}", nodes.len(), parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"priority": priority, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}}))
            .expect("pod"),
        )
    }

    #[test]
    fn t10_the_lowest_priority_pods_that_free_enough_are_the_victims() {
        let node: Arc<k8s_openapi::api::core::v1::Node> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}))
                .expect("node"),
        );
        let mut info = NodeInfo::new(node);
        info.add(pod("low", 0, "1"));
        info.add(pod("mid", 10, "1"));
        let high = pod("high", 100, "1");
        let failures = vec![("n".to_string(), plugins::filter(&high, &info, &[]).expect_err("full"))];
        let chosen = select(&high, &[info.clone()], &failures).expect("preempts");
        assert_eq!(
            chosen.victims.iter().map(|v| v.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>(),
            vec!["low"]
        );
        let lowest = pod("lowest", -1, "1");
        let failures = vec![("n".to_string(), plugins::filter(&lowest, &info, &[]).expect_err("full"))];
        assert_eq!(
            select(&lowest, &[info], &failures).expect_err("nothing lower"),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod"
        );
    }
}
