//! The Job controller: pods up to `parallelism` until `completions` succeed,
//! or the job fails once more than `backoffLimit` pods failed; the
//! SuccessCriteriaMet/Complete and FailureTarget/Failed conditions as kube 1.33 writes them.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::replicaset::{pod_from_template, status_changed, Expectations};
use super::{by_controller, controller_ref, is_active, is_ready, Context};
use crate::client::informer::Changes;
use crate::client::{self, Write};

pub struct Plan {
    pub create: usize,
    pub delete: Vec<Arc<Pod>>,
    pub status: Value,
    pub event: Option<(bool, &'static str, String)>,
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"))
}

fn condition(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

pub fn plan(job: &Job, pods: &[Arc<Pod>], now: &str) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let active: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let succeeded = pods.iter().filter(|p| phase(p) == Some("Succeeded")).count() as i32;
    let failed = pods.iter().filter(|p| phase(p) == Some("Failed")).count() as i32;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| client::time_text(t.0))
        .unwrap_or_else(|| now.to_string());
    let mut status = json!({
        "active": active.len(), "succeeded": succeeded, "failed": failed,
        "ready": active.iter().filter(|p| is_ready(p)).count(),
        "terminating": pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some()).count(),
        "startTime": start, "uncountedTerminatedPods": {},
    });
    let done = match spec.completions {
        Some(completions) => succeeded >= completions,
        None => succeeded >= 1 && active.is_empty(),
    };
    let mut plan = Plan { create: 0, delete: Vec::new(), status: json!({}), event: None };
    if failed > backoff_limit {
        let message = "Job has reached the specified backoff limit";
        status["conditions"] = json!([
            condition("FailureTarget", "BackoffLimitExceeded", message, now),
            condition("Failed", "BackoffLimitExceeded", message, now)
        ]);
        plan.delete = active;
        plan.event = Some((true, "BackoffLimitExceeded", message.to_string()));
    } else if done {
        let message = "Reached expected number of succeeded pods";
        status["conditions"] = json!([
            condition("SuccessCriteriaMet", "CompletionsReached", message, now),
            condition("Complete", "CompletionsReached", message, now)
        ]);
        status["completionTime"] = json!(now);
        plan.delete = active;
        plan.event = Some((false, "Completed", "Job completed".to_string()));
    } else {
        let wanted = match spec.completions {
            Some(completions) => parallelism.min(completions - succeeded),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        plan.create = (wanted.max(0) as usize).saturating_sub(active.len());
    }
    plan.status = status;
    plan
}

pub async fn run(ctx: Arc<Context>) {
    let reporter = ctx.reporter("job-controller");
    let mut expectations = Expectations::default();
    let mut wake = Changes::any_of(&[ctx.caches.jobs.changes(), ctx.caches.pods.changes()]).subscribe();
    loop {
        client::informer::next_pass(&mut wake, ctx.config.min_resync_period).await;
        let jobs = ctx.caches.jobs.state();
        if jobs.is_empty() {
            continue;
        }
        let pods = ctx.caches.pods.state();
        let owned = by_controller(&pods);
        let now = client::time_text(client::now());
        for job in jobs {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            let mine = owned.get(uid.as_str()).cloned().unwrap_or_default();
            if finished(&job) || job.metadata.deletion_timestamp.is_some() || !expectations.satisfied(&uid, &mine) {
                continue;
            }
            if job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
                continue;
            }
            let namespace = job.metadata.namespace.clone().unwrap_or_default();
            let name = job.metadata.name.clone().unwrap_or_default();
            let plan = plan(&job, &mine, &now);
            let owner = json!(controller_ref("batch/v1", "Job", &job.metadata));
            let template = serde_json::to_value(job.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
            let creates: Vec<Write> = (0..plan.create)
                .map(|_| Write::create::<Pod>(&namespace, pod_from_template(&template, &name, &namespace, &owner)))
                .collect();
            let results = client::writes::perform_all(&ctx.client, "job", creates).await;
            let created: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
                .collect();
            let job_json = super::object_json(&*job);
            let mut writes: Vec<Write> = created
                .iter()
                .map(|pod| reporter.event(&job_json, false, "SuccessfulCreate", &format!("Created pod: {pod}")))
                .collect();
            for pod in &plan.delete {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                writes.push(Write::delete::<Pod>(&namespace, &pod_name, pod.metadata.uid.as_deref()));
            }
            expectations.expect(&uid, created, plan.delete.iter().filter_map(|p| p.metadata.uid.clone()).collect());
            if let Some((warning, reason, message)) = &plan.event {
                writes.push(reporter.event(&job_json, *warning, reason, message));
            }
            let current = serde_json::to_value(&job.status).ok();
            if status_changed(current.as_ref(), &plan.status) {
                writes.push(Write::merge_status::<Job>(&namespace, &name, json!({"status": plan.status})));
            }
            client::writes::perform_all(&ctx.client, "job", writes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(completions: i32, parallelism: i32, backoff: i32) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "default", "uid": "j1"},
            "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}))
        .expect("job")
    }

    fn pod(name: &str, phase: &str) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "uid": name}, "spec": {"containers": []}, "status": {"phase": phase}})).expect("pod"))
    }

    #[test]
    fn t10_pods_run_up_to_parallelism_until_completions_succeed() {
        let start = plan(&job(3, 2, 6), &[], "t");
        assert_eq!(start.create, 2);
        let middle = plan(&job(3, 2, 6), &[pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c", "Running")], "t");
        assert_eq!(middle.create, 0);
        let done = plan(&job(3, 2, 6), &[pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c", "Succeeded")], "t");
        assert_eq!(done.status["conditions"][1]["type"], json!("Complete"));
        assert_eq!(done.status["succeeded"], json!(3));
    }

    #[test]
    fn t11_more_failures_than_the_backoff_limit_fail_the_job() {
        let failed = plan(&job(1, 1, 1), &[pod("a", "Failed"), pod("b", "Failed")], "t");
        assert_eq!(failed.status["conditions"][1]["type"], json!("Failed"));
        assert_eq!(failed.status["conditions"][1]["reason"], json!("BackoffLimitExceeded"));
        let retry = plan(&job(1, 1, 1), &[pod("a", "Failed")], "t");
        assert_eq!(retry.create, 1);
    }
}
