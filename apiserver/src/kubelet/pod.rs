//! One pod's life on a hollow node: sandbox, image pulls, containers, probes,
//! restarts, exits, graceful deletion, and the pod status the kubelet posts.
//! `status` is a pure function of what the worker knows; the worker loop is
//! the only part that waits or writes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cri::Runtime;
use super::runtime::{self, ContainerSpec, ContainerState, SandboxMeta};
use crate::client::events::Reporter;
use crate::client::{self, writes::Op, Write};

/// What a pod's worker needs of its node.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub runtime: Runtime,
    pub reporter: Reporter,
}

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting(&'static str),
    Running { started_at: String },
    Terminated { exit_code: i32, started_at: String, finished_at: String },
}

#[derive(Clone, Debug)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub init: bool,
    pub id: Option<String>,
    pub state: State,
    pub last_state: Option<State>,
    pub ready: bool,
    pub restart_count: i32,
    /// When the running container exits on its own, and with what code.
    exit_at: Option<(Instant, i32)>,
    /// When a waiting (crash-looping) container starts again.
    restart_at: Option<Instant>,
    next_readiness: Option<Instant>,
    next_liveness: Option<Instant>,
    liveness_failures: i32,
}

impl ContainerRun {
    fn new(container: &Container, init: bool) -> ContainerRun {
        ContainerRun {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            init,
            id: None,
            state: State::Waiting(if init { "PodInitializing" } else { "ContainerCreating" }),
            last_state: None,
            ready: false,
            restart_count: 0,
            exit_at: None,
            restart_at: None,
            next_readiness: None,
            next_liveness: None,
            liveness_failures: 0,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn exit_code(&self) -> Option<i32> {
        match self.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }
}

/// What the worker knows of its pod.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    pub pod_ip: Option<Ipv4Addr>,
    pub start_time: Option<String>,
    pub containers: Vec<ContainerRun>,
    pub deleting: bool,
}

fn state_json(state: &State, id: Option<&str>) -> Value {
    match state {
        State::Waiting(reason) => json!({"waiting": {"reason": reason}}),
        State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
        State::Terminated { exit_code, started_at, finished_at } => {
            let mut terminated = json!({
                "exitCode": exit_code,
                "reason": if *exit_code == 0 { "Completed" } else { "Error" },
                "startedAt": started_at,
                "finishedAt": finished_at,
            });
            if let Some(id) = id {
                terminated["containerID"] = json!(format!("cairn://{id}"));
            }
            json!({"terminated": terminated})
        }
    }
}

fn container_status(run: &ContainerRun) -> Value {
    let mut status = json!({
        "name": run.name,
        "image": runtime::normalize_image(&run.image),
        "imageID": if run.id.is_some() { runtime::image_id(&run.image) } else { String::new() },
        "ready": run.ready,
        "restartCount": run.restart_count,
        "started": run.running(),
        "state": state_json(&run.state, run.id.as_deref()),
        "lastState": run.last_state.as_ref().map(|s| state_json(s, run.id.as_deref())).unwrap_or_else(|| json!({})),
    });
    if let Some(id) = &run.id {
        status["containerID"] = json!(format!("cairn://{id}"));
    }
    status
}

/// The phase kube derives from container states and the restart policy.
pub fn phase(view: &PodView, restart_policy: &str) -> &'static str {
    let main: Vec<&ContainerRun> = view.containers.iter().filter(|c| !c.init).collect();
    if view.containers.iter().any(|c| c.init && c.exit_code() != Some(0)) {
        let failed = view.containers.iter().any(|c| c.init && c.exit_code().is_some_and(|e| e != 0));
        return if failed && restart_policy == "Never" { "Failed" } else { "Pending" };
    }
    let terminated: Vec<i32> = main.iter().filter_map(|c| c.exit_code()).collect();
    if !main.is_empty() && terminated.len() == main.len() {
        let all_succeeded = terminated.iter().all(|&e| e == 0);
        return match restart_policy {
            "Always" if !view.deleting => "Running",
            "OnFailure" if !all_succeeded && !view.deleting => "Running",
            _ if all_succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    if main.iter().any(|c| c.running() || c.exit_code().is_some()) {
        "Running"
    } else {
        "Pending"
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> Value {
    let mut condition = json!({"type": kind, "status": if ok { "True" } else { "False" }});
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    if let Some(message) = message {
        condition["message"] = json!(message);
    }
    condition
}

/// The pod status to post; lastTransitionTimes are kept from `previous` when a
/// condition's status has not changed.
pub fn status(view: &PodView, pod: &Pod, host_ip: Ipv4Addr, now: &str) -> Value {
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
    let phase = phase(view, &restart_policy);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let pending_init: Vec<&str> =
        view.containers.iter().filter(|c| c.init && c.exit_code() != Some(0)).map(|c| c.name.as_str()).collect();
    let unready: Vec<&str> = view.containers.iter().filter(|c| !c.init && !c.ready).map(|c| c.name.as_str()).collect();
    let names = |list: &[&str]| format!("[{}]", list.join(" "));
    let ready_reason = if terminal { Some("PodCompleted") } else { Some("ContainersNotReady") };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", view.pod_ip.is_some() && !terminal, None, None),
        if pending_init.is_empty() || terminal {
            condition(
                "Initialized",
                true,
                terminal.then_some("PodCompleted").filter(|_| !pending_init.is_empty()),
                None,
            )
        } else {
            condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: {}", names(&pending_init))),
            )
        },
    ];
    for kind in ["Ready", "ContainersReady"] {
        conditions.push(if unready.is_empty() && !terminal {
            condition(kind, true, None, None)
        } else if terminal {
            condition(kind, false, ready_reason, None)
        } else {
            condition(kind, false, ready_reason, Some(format!("containers with unready status: {}", names(&unready))))
        });
    }
    let previous: BTreeMap<String, Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| serde_json::to_value(&c).ok().map(|v| (c.type_, v)))
        .collect();
    for condition in &mut conditions {
        let kind = condition["type"].as_str().unwrap_or_default().to_string();
        let since = previous
            .get(&kind)
            .filter(|p| p["status"] == condition["status"])
            .and_then(|p| p["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.to_string());
        condition["lastTransitionTime"] = json!(since);
        condition["lastProbeTime"] = Value::Null;
    }
    // Conditions others own (PodScheduled, DisruptionTarget) stay as they are.
    for (kind, other) in previous {
        if !conditions.iter().any(|c| c["type"] == kind.as_str()) {
            conditions.push(other);
        }
    }
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "containerStatuses": view.containers.iter().filter(|c| !c.init).map(container_status).collect::<Vec<_>>(),
        "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()),
    });
    let inits: Vec<Value> = view.containers.iter().filter(|c| c.init).map(container_status).collect();
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    if let Some(ip) = view.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    if let Some(start) = &view.start_time {
        status["startTime"] = json!(start);
    }
    status
}

/// The restart back-off kube uses: 10 s, doubling, at most 5 minutes.
fn back_off(restarts: i32) -> Duration {
    let seconds = 10u64.saturating_mul(1u64 << restarts.clamp(0, 5));
    Duration::from_secs(seconds.min(300))
}

fn probe_period(probe: &Probe) -> Duration {
    Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64)
}

fn probe_delay(probe: &Probe) -> Duration {
    Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
}

pub struct Worker {
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    view: PodView,
    sandbox: Option<String>,
    posted: Option<Value>,
}

impl Worker {
    pub fn new(ctx: Arc<NodeContext>, pod: Arc<Pod>) -> Worker {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut containers: Vec<ContainerRun> =
            spec.init_containers.iter().flatten().map(|c| ContainerRun::new(c, true)).collect();
        containers.extend(spec.containers.iter().map(|c| ContainerRun::new(c, false)));
        Worker { ctx, pod, view: PodView { containers, ..PodView::default() }, sandbox: None, posted: None }
    }

    fn spec_of(&self, index: usize) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        let inits = spec.init_containers.as_ref().map_or(0, Vec::len);
        if index < inits {
            spec.init_containers.as_ref()?.get(index).cloned()
        } else {
            spec.containers.get(index - inits).cloned()
        }
    }

    fn pod_json(&self) -> Value {
        let mut object = serde_json::to_value(&*self.pod).unwrap_or_default();
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Pod");
        object
    }

    async fn emit(&self, index: usize, warning: bool, reason: &str, message: String) {
        let kind = if self.view.containers[index].init { "initContainers" } else { "containers" };
        let path = format!("spec.{kind}{{{}}}", self.view.containers[index].name);
        let event = self.ctx.reporter.event_on(&self.pod_json(), Some(&path), warning, reason, &message);
        client::writes::perform_all(&self.ctx.client, "kubelet", vec![event]).await;
    }

    async fn post_status(&mut self) {
        let now = client::time_text(client::now());
        let status = status(&self.view, &self.pod, self.ctx.node_ip, &now);
        if self.posted.as_ref() == Some(&status) {
            return;
        }
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let write = Write::merge_status::<Pod>(&namespace, &name, json!({"status": status}));
        if let Ok(updated) = write.perform(&self.ctx.client).await {
            if let Ok(pod) = serde_json::from_value::<Pod>(updated) {
                self.pod = Arc::new(pod);
            }
            self.posted = Some(status);
        }
    }

    fn owned_by_job(&self) -> bool {
        self.pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "Job")
    }

    /// Pulls the image (with kubelet's events) and starts container `index`.
    async fn start(&mut self, index: usize) {
        let Some(container) = self.spec_of(index) else { return };
        let image = container.image.clone().unwrap_or_default();
        let policy = container.image_pull_policy.clone().unwrap_or_default();
        if self.ctx.runtime.image_present(&image).await && policy != "Always" {
            self.emit(index, false, "Pulled", format!("Container image {image:?} already present on machine")).await;
        } else {
            self.emit(index, false, "Pulling", format!("Pulling image {image:?}")).await;
            match self.ctx.runtime.pull_image(&image).await {
                Ok(took) => {
                    let took = format!("{:.3}s", took.as_secs_f64());
                    let message = format!("Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: 10000000 bytes.");
                    self.emit(index, false, "Pulled", message).await;
                }
                Err(error) => {
                    self.emit(index, true, "Failed", format!("Failed to pull image {image:?}: {error}")).await;
                    let run = &mut self.view.containers[index];
                    run.state = State::Waiting("ErrImagePull");
                    run.restart_at = Some(Instant::now() + back_off(run.restart_count));
                    return;
                }
            }
        }
        let sandbox = self.sandbox.clone().unwrap_or_default();
        let job = self.owned_by_job();
        let init = self.view.containers[index].init;
        // Init containers with nothing to run complete at once.
        let exit = runtime::exit_plan(&container, init || job).or(init.then_some((Duration::ZERO, 0)));
        let spec = ContainerSpec {
            name: container.name.clone(),
            image: image.clone(),
            ports: container.ports.iter().flatten().map(|p| p.container_port).collect(),
            exit,
        };
        match self.ctx.runtime.start_container(&sandbox, spec).await {
            Ok(id) => {
                let name = container.name.clone();
                self.emit(index, false, "Created", format!("Created container: {name}")).await;
                self.emit(index, false, "Started", format!("Started container {name}")).await;
                let now = Instant::now();
                let run = &mut self.view.containers[index];
                run.id = Some(id);
                run.state = State::Running { started_at: client::time_text(client::now()) };
                run.exit_at = exit.map(|(after, code)| (now + after, code));
                run.ready = container.readiness_probe.is_none() && !run.init;
                run.next_readiness = container.readiness_probe.as_ref().map(|p| now + probe_delay(p));
                run.next_liveness = container.liveness_probe.as_ref().map(|p| now + probe_delay(p) + probe_period(p));
                run.liveness_failures = 0;
            }
            Err(error) => {
                self.emit(index, true, "Failed", format!("Error: {error}")).await;
                let run = &mut self.view.containers[index];
                run.state = State::Waiting("CreateContainerError");
                run.restart_at = Some(Instant::now() + back_off(run.restart_count));
            }
        }
    }

    async fn stop(&mut self, index: usize, exit_code: i32) {
        if let Some(id) = self.view.containers[index].id.clone() {
            self.ctx.runtime.stop_container(&id, exit_code).await;
        }
        let run = &mut self.view.containers[index];
        let started_at = match &run.state {
            State::Running { started_at } => started_at.clone(),
            _ => return,
        };
        run.state = State::Terminated { exit_code, started_at, finished_at: client::time_text(client::now()) };
        run.ready = false;
        run.exit_at = None;
        run.next_readiness = None;
        run.next_liveness = None;
    }

    /// After an exit: restart per the pod's policy, with back-off.
    fn after_exit(&mut self, index: usize) {
        let policy = self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let run = &mut self.view.containers[index];
        let Some(code) = run.exit_code() else { return };
        let restart = match policy.as_str() {
            "Always" => !run.init || code != 0,
            "OnFailure" => code != 0,
            _ => false,
        };
        if restart {
            run.last_state = Some(run.state.clone());
            run.state = State::Waiting("CrashLoopBackOff");
            run.restart_at = Some(Instant::now() + back_off(run.restart_count));
        }
    }

    /// Runs one probe of a running container; only echo containers answer for real.
    async fn probe(&self, index: usize, probe: &Probe) -> bool {
        let run = &self.view.containers[index];
        if !runtime::is_echo(&run.image) {
            return true;
        }
        let Some(ip) = self.view.pod_ip else { return false };
        let container = self.spec_of(index).unwrap_or_default();
        let port_of = |port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| match port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => Some(*p),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        };
        let port = probe
            .http_get
            .as_ref()
            .and_then(|h| port_of(&h.port))
            .or_else(|| probe.tcp_socket.as_ref().and_then(|t| port_of(&t.port)));
        let Some(port) = port else { return true };
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port as u16))).await.is_ok_and(|r| r.is_ok())
    }

    /// The next moment something is due.
    fn next_due(&self) -> Option<Instant> {
        self.view
            .containers
            .iter()
            .flat_map(|c| [c.exit_at.map(|(at, _)| at), c.restart_at, c.next_readiness, c.next_liveness])
            .flatten()
            .min()
    }

    /// Advances every container whose moment has come; init containers run one at a time, first.
    async fn step(&mut self) {
        let now = Instant::now();
        for index in 0..self.view.containers.len() {
            if let Some((at, planned)) = self.view.containers[index].exit_at {
                if at <= now {
                    // The runtime says how the container ended; ask it, as the PLEG does.
                    let id = self.view.containers[index].id.clone().unwrap_or_default();
                    match self.ctx.runtime.container_state(&id).await {
                        Some(ContainerState::Running) => {
                            self.view.containers[index].exit_at = Some((now + Duration::from_millis(50), planned));
                            continue;
                        }
                        Some(ContainerState::Exited(code)) => self.stop(index, code).await,
                        _ => self.stop(index, planned).await,
                    }
                    self.after_exit(index);
                }
            }
        }
        let inits_done = self.view.containers.iter().filter(|c| c.init).all(|c| c.exit_code() == Some(0));
        for index in 0..self.view.containers.len() {
            let run = &self.view.containers[index];
            let due_restart = run.restart_at.is_some_and(|at| at <= now);
            let fresh = run.id.is_none() && run.restart_at.is_none();
            let first_pending_init =
                run.init && self.view.containers.iter().position(|c| c.init && c.exit_code() != Some(0)) == Some(index);
            let may_start = if run.init { first_pending_init } else { inits_done };
            if (due_restart || fresh) && may_start && !run.running() {
                if due_restart {
                    let run = &mut self.view.containers[index];
                    run.restart_count += 1;
                    run.restart_at = None;
                }
                self.start(index).await;
                if self.view.containers[index].init {
                    break;
                }
            }
        }
        for index in 0..self.view.containers.len() {
            let Some(container) = self.spec_of(index) else { continue };
            let run = &self.view.containers[index];
            if let (Some(at), Some(probe)) = (run.next_readiness, container.readiness_probe.as_ref()) {
                if at <= now && run.running() {
                    let ok = self.probe(index, probe).await;
                    let run = &mut self.view.containers[index];
                    run.ready = ok;
                    run.next_readiness = Some(now + probe_period(probe));
                }
            }
            let run = &self.view.containers[index];
            if let (Some(at), Some(probe)) = (run.next_liveness, container.liveness_probe.as_ref()) {
                if at <= now && run.running() {
                    let ok = self.probe(index, probe).await;
                    let run = &mut self.view.containers[index];
                    run.next_liveness = Some(now + probe_period(probe));
                    run.liveness_failures = if ok { 0 } else { run.liveness_failures + 1 };
                    if run.liveness_failures >= probe.failure_threshold.unwrap_or(3) {
                        let name = run.name.clone();
                        self.emit(index, true, "Unhealthy", "Liveness probe failed".to_string()).await;
                        self.emit(
                            index,
                            false,
                            "Killing",
                            format!("Container {name} failed liveness probe, will be restarted"),
                        )
                        .await;
                        self.stop(index, 137).await;
                        self.after_exit(index);
                    }
                }
            }
        }
    }

    /// Stops every container, posts the final status, and deletes the pod.
    /// Stops every container within the pod's grace period (a container that
    /// ignores SIGTERM is killed when it runs out), posts the final status, and
    /// deletes the pod.
    async fn terminate(&mut self) {
        self.view.deleting = true;
        let grace = self.pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0);
        let deadline = Instant::now() + Duration::from_secs(grace as u64);
        let mut stubborn = Vec::new();
        for index in 0..self.view.containers.len() {
            self.view.containers[index].restart_at = None;
            if !self.view.containers[index].running() {
                continue;
            }
            let name = self.view.containers[index].name.clone();
            self.emit(index, false, "Killing", format!("Stopping container {name}")).await;
            if self.spec_of(index).is_some_and(|c| runtime::ignores_sigterm(&c)) {
                stubborn.push(index);
            } else {
                self.stop(index, 0).await;
            }
        }
        if !stubborn.is_empty() {
            self.post_status().await;
            tokio::time::sleep_until(deadline).await;
            for index in stubborn {
                self.stop(index, 137).await;
            }
        }
        self.post_status().await;
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let delete = Write::new::<Pod>(
            &namespace,
            Op::Delete { name, uid: self.pod.metadata.uid.clone(), grace_seconds: Some(0), propagation: None },
        );
        client::writes::perform_all(&self.ctx.client, "kubelet", vec![delete]).await;
    }

    /// Runs the pod until it is deleted or leaves the node.
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let already_done =
            matches!(self.pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"));
        if !already_done && self.pod.metadata.deletion_timestamp.is_none() {
            let meta = SandboxMeta {
                name: self.pod.metadata.name.clone().unwrap_or_default(),
                namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
                uid: self.pod.metadata.uid.clone().unwrap_or_default(),
                labels: self.pod.metadata.labels.clone().unwrap_or_default(),
            };
            match self.ctx.runtime.run_pod_sandbox(meta, host_network).await {
                Ok((id, ip)) => {
                    self.sandbox = Some(id);
                    self.view.pod_ip = Some(ip);
                    self.view.start_time = Some(client::time_text(client::now()));
                }
                Err(error) => tracing::warn!(%error, "no sandbox for a pod"),
            }
            self.post_status().await;
            self.step().await;
            self.post_status().await;
        }
        loop {
            let due = self.next_due();
            tokio::select! {
                changed = updates.changed() => {
                    let current = updates.borrow_and_update().clone();
                    match (changed, current) {
                        (Ok(()), Some(pod)) => {
                            let deleting = pod.metadata.deletion_timestamp.is_some();
                            self.pod = pod;
                            if deleting {
                                self.terminate().await;
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                _ = async { match due { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    self.step().await;
                }
            }
            self.post_status().await;
        }
        for run in &self.view.containers {
            if let Some(id) = &run.id {
                self.ctx.runtime.stop_container(id, 0).await;
            }
        }
        if let Some(sandbox) = &self.sandbox {
            self.ctx.runtime.remove_pod_sandbox(sandbox).await;
        }
    }
}
