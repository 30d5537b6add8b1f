//! The simulated container runtime behind each hollow node, shaped like CRI's
//! `runtime.v1` RuntimeService and ImageService: images are pulled (with a
//! delay unless cached), sandboxes get an IP from the node's pod CIDR on
//! loopback, and containers of the `cairn.io/echo` image really serve HTTP on
//! their pod IP, answering with their pod's name. Other containers run until
//! stopped, or exit as their spec asks (see `exit_plan`).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The image whose containers serve HTTP.
pub const ECHO_IMAGE: &str = "cairn.io/echo";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no pod IP left in {0}")]
    NoAddress(String),
    #[error("the container runtime: {0}")]
    Cri(String),
    #[error("listening on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

/// `docker.io/library/nginx:latest` for `nginx`, as container runtimes name images.
pub fn normalize_image(image: &str) -> String {
    let (name, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    };
    let name = match name.split('/').collect::<Vec<_>>().as_slice() {
        [one] => format!("docker.io/library/{one}"),
        [first, ..] if !first.contains('.') && !first.contains(':') && *first != "localhost" => {
            format!("docker.io/{name}")
        }
        _ => name,
    };
    format!("{name}:{tag}")
}

/// A stable, made-up digest of an image, for `imageID`.
pub fn image_id(image: &str) -> String {
    use sha2::Digest;
    let normalized = normalize_image(image);
    let digest = sha2::Sha256::digest(normalized.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let repository = normalized.rsplit_once(':').map(|(n, _)| n).unwrap_or(&normalized);
    format!("{repository}@sha256:{hex}")
}

pub fn is_echo(image: &str) -> bool {
    normalize_image(image) == normalize_image(ECHO_IMAGE)
}

/// A container's environment variable, as its spec sets it.
pub fn env_var(container: &Container, name: &str) -> Option<String> {
    container.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
}

/// A simulated container with `CAIRN_IGNORE_SIGTERM=true` does not stop on
/// SIGTERM: it is killed (exit 137) when the pod's grace period runs out.
pub fn ignores_sigterm(container: &Container) -> bool {
    env_var(container, "CAIRN_IGNORE_SIGTERM").as_deref() == Some("true")
}

/// When and how a simulated container exits on its own:
/// - env `CAIRN_EXIT_AFTER` (seconds) and `CAIRN_EXIT_CODE` say it directly;
/// - otherwise `sleep N` and `exit N` in its command and args are honoured
///   (`sh -c "sleep 2; exit 1"` runs 2 s and fails);
/// - otherwise a container of a Job's pod completes after one second, as kwok's
///   pod-complete stage does; every other container runs until stopped.
pub fn exit_plan(container: &Container, owned_by_job: bool) -> Option<(Duration, i32)> {
    let env = |name: &str| env_var(container, name);
    if let Some(after) = env("CAIRN_EXIT_AFTER").and_then(|v| v.parse::<f64>().ok()) {
        let code = env("CAIRN_EXIT_CODE").and_then(|v| v.parse().ok()).unwrap_or(0);
        return Some((Duration::from_secs_f64(after.max(0.0)), code));
    }
    let words: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .flat_map(|part| {
            part.split(|c: char| c.is_whitespace() || c == ';' || c == '&').map(String::from).collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let number_after = |word: &str| {
        words.windows(2).find(|w| w[0] == word).and_then(|w| w[1].parse::<f64>().ok()).filter(|n| n.is_finite())
    };
    let sleep = number_after("sleep");
    let code = number_after("exit").map(|c| c as i32);
    match (sleep, code) {
        (None, None) if owned_by_job => Some((Duration::from_secs(1), 0)),
        (None, None) => None,
        (sleep, code) => Some((Duration::from_secs_f64(sleep.unwrap_or(0.0).max(0.0)), code.unwrap_or(0))),
    }
}

/// What the kubelet tells the runtime about a pod's sandbox (CRI's PodSandboxMetadata).
#[derive(Clone, Debug, Default)]
pub struct SandboxMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What the kubelet tells the runtime about a container (CRI's ContainerConfig, in short).
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The containerPorts the echo image serves.
    pub ports: Vec<i32>,
    /// When it exits on its own, and how (`exit_plan`).
    pub exit: Option<(Duration, i32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited(i32),
}

/// A sandbox as RuntimeService.ListPodSandbox reports it.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    pub id: String,
    pub meta: SandboxMeta,
    pub ip: Ipv4Addr,
    pub ready: bool,
    pub created_ns: i64,
}

/// A container as RuntimeService.ListContainers and ContainerStatus report it.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
    pub created_ns: i64,
    pub started_ns: i64,
    pub finished_ns: i64,
}

struct Running {
    info: ContainerInfo,
    exit_at: Option<(tokio::time::Instant, i32)>,
    servers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Applies a due exit: the container's processes are gone.
    fn refresh(&mut self) {
        if let (ContainerState::Running, Some((at, code))) = (self.info.state, self.exit_at) {
            if tokio::time::Instant::now() >= at {
                self.halt(code);
            }
        }
    }

    fn halt(&mut self, code: i32) {
        self.servers.iter().for_each(JoinHandle::abort);
        self.servers.clear();
        if self.info.state == ContainerState::Running {
            self.info.finished_ns = now_ns();
        }
        if self.info.state != ContainerState::Created || code != 0 {
            self.info.state = ContainerState::Exited(code);
        }
        self.exit_at = None;
    }
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

#[derive(Default)]
struct State {
    images: BTreeSet<String>,
    sandboxes: HashMap<String, SandboxInfo>,
    containers: HashMap<String, Running>,
    free: BTreeSet<u32>,
    next_id: u64,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        let seed = format!("{}-{}", std::process::id(), self.next_id);
        use sha2::Digest;
        sha2::Sha256::digest(seed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One hollow node's runtime.
pub struct SimRuntime {
    state: Mutex<State>,
    pod_cidr: String,
    node_ip: Ipv4Addr,
    pull_delay: Duration,
}

impl SimRuntime {
    /// Pod IPs are the /24 `pod_cidr`'s .2 to .254; host-network pods get `node_ip`.
    pub fn new(
        pod_cidr: Ipv4Addr,
        node_ip: Ipv4Addr,
        cached_images: &[String],
        pull_delay: Duration,
    ) -> Arc<SimRuntime> {
        let base = u32::from(pod_cidr) & 0xffff_ff00;
        let state = State {
            images: cached_images.iter().map(|i| normalize_image(i)).collect(),
            free: (base + 2..base + 255).collect(),
            ..State::default()
        };
        Arc::new(SimRuntime {
            state: Mutex::new(state),
            pod_cidr: format!("{}/24", Ipv4Addr::from(base)),
            node_ip,
            pull_delay,
        })
    }

    pub fn pod_cidr(&self) -> &str {
        &self.pod_cidr
    }

    /// ImageService.ImageStatus: is it on the node?
    pub fn image_present(&self, image: &str) -> bool {
        self.state.lock().images.contains(&normalize_image(image))
    }

    /// ImageService.ListImages.
    pub fn images(&self) -> Vec<String> {
        self.state.lock().images.iter().cloned().collect()
    }

    /// ImageService.PullImage: takes the pull delay unless the image is cached.
    pub async fn pull_image(&self, image: &str) {
        let delay = if self.image_present(image) { Duration::from_millis(50) } else { self.pull_delay };
        tokio::time::sleep(delay).await;
        self.state.lock().images.insert(normalize_image(image));
    }

    /// ImageService.RemoveImage.
    pub fn remove_image(&self, image: &str) {
        self.state.lock().images.remove(&normalize_image(image));
    }

    /// RuntimeService.RunPodSandbox: returns the sandbox id and its IP.
    pub fn run_pod_sandbox(&self, meta: SandboxMeta, host_network: bool) -> Result<(String, Ipv4Addr), RuntimeError> {
        let mut state = self.state.lock();
        let ip = if host_network {
            self.node_ip
        } else {
            let first = state.free.pop_first().ok_or_else(|| RuntimeError::NoAddress(self.pod_cidr.clone()))?;
            Ipv4Addr::from(first)
        };
        let id = state.new_id();
        state.sandboxes.insert(id.clone(), SandboxInfo { id: id.clone(), meta, ip, ready: true, created_ns: now_ns() });
        Ok((id, ip))
    }

    /// RuntimeService.StopPodSandbox: its containers stop, its IP is free again.
    pub fn stop_pod_sandbox(&self, id: &str) {
        let mut state = self.state.lock();
        for container in state.containers.values_mut().filter(|c| c.info.sandbox == id) {
            container.halt(0);
        }
        let Some(sandbox) = state.sandboxes.get_mut(id) else { return };
        if !sandbox.ready {
            return;
        }
        sandbox.ready = false;
        let ip = u32::from(sandbox.ip);
        if sandbox.ip != self.node_ip {
            state.free.insert(ip);
        }
    }

    /// RuntimeService.RemovePodSandbox, with its containers.
    pub fn remove_pod_sandbox(&self, id: &str) {
        self.stop_pod_sandbox(id);
        let mut state = self.state.lock();
        state.containers.retain(|_, c| c.info.sandbox != id);
        state.sandboxes.remove(id);
    }

    /// RuntimeService.CreateContainer.
    pub fn create_container(&self, sandbox: &str, spec: ContainerSpec) -> String {
        let mut state = self.state.lock();
        let id = state.new_id();
        let info = ContainerInfo {
            id: id.clone(),
            sandbox: sandbox.to_string(),
            spec,
            state: ContainerState::Created,
            created_ns: now_ns(),
            started_ns: 0,
            finished_ns: 0,
        };
        state.containers.insert(id.clone(), Running { info, exit_at: None, servers: Vec::new() });
        id
    }

    /// RuntimeService.StartContainer: an echo container listens on its ports of the pod IP.
    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let (spec, sandbox) = {
            let state = self.state.lock();
            let Some(container) = state.containers.get(id) else { return Ok(()) };
            let sandbox = state.sandboxes.get(&container.info.sandbox).cloned();
            (container.info.spec.clone(), sandbox)
        };
        let mut servers = Vec::new();
        if let (Some(sandbox), true) = (&sandbox, is_echo(&spec.image)) {
            for port in &spec.ports {
                let address = format!("{}:{port}", sandbox.ip);
                let listener = TcpListener::bind(&address)
                    .await
                    .map_err(|source| RuntimeError::Listen { address: address.clone(), source })?;
                servers.push(tokio::spawn(serve_echo(listener, sandbox.meta.name.clone())));
            }
        }
        let mut state = self.state.lock();
        let Some(container) = state.containers.get_mut(id) else {
            servers.iter().for_each(JoinHandle::abort);
            return Ok(());
        };
        container.info.state = ContainerState::Running;
        container.info.started_ns = now_ns();
        container.exit_at = spec.exit.map(|(after, code)| (tokio::time::Instant::now() + after, code));
        container.servers = servers;
        Ok(())
    }

    /// RuntimeService.StopContainer: a stopped container exits 0 (it handles SIGTERM).
    pub fn stop_container(&self, id: &str, exit_code: i32) {
        if let Some(container) = self.state.lock().containers.get_mut(id) {
            container.refresh();
            container.halt(exit_code);
        }
    }

    /// RuntimeService.RemoveContainer.
    pub fn remove_container(&self, id: &str) {
        if let Some(mut container) = self.state.lock().containers.remove(id) {
            container.halt(0);
        }
    }

    /// RuntimeService.ContainerStatus.
    pub fn container_status(&self, id: &str) -> Option<ContainerInfo> {
        let mut state = self.state.lock();
        let container = state.containers.get_mut(id)?;
        container.refresh();
        Some(container.info.clone())
    }

    /// RuntimeService.ListContainers.
    pub fn list_containers(&self) -> Vec<ContainerInfo> {
        let mut state = self.state.lock();
        state
            .containers
            .values_mut()
            .map(|c| {
                c.refresh();
                c.info.clone()
            })
            .collect()
    }

    /// RuntimeService.ListPodSandbox and PodSandboxStatus.
    pub fn list_sandboxes(&self) -> Vec<SandboxInfo> {
        self.state.lock().sandboxes.values().cloned().collect()
    }

    pub fn sandbox_count(&self) -> usize {
        self.state.lock().sandboxes.len()
    }
}

/// The echo server: every request is answered 200 with the pod's name.
async fn serve_echo(listener: TcpListener, pod_name: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let body = format!("{pod_name}\n");
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut read = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while read < buffer.len() {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer[read..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => read += n,
                }
                if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_images_are_named_as_runtimes_name_them() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(normalize_image("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(normalize_image("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert!(is_echo("cairn.io/echo:latest"));
    }

    #[test]
    fn t11_exit_plans_come_from_env_or_sleep_and_exit_words() {
        let container = |command: Vec<&str>, env: Vec<(&str, &str)>| Container {
            command: Some(command.into_iter().map(String::from).collect()),
            env: Some(
                env.into_iter()
                    .map(|(n, v)| k8s_openapi::api::core::v1::EnvVar {
                        name: n.into(),
                        value: Some(v.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        assert_eq!(
            exit_plan(&container(vec!["sh", "-c", "sleep 2; exit 3"], vec![]), false),
            Some((Duration::from_secs(2), 3))
        );
        assert_eq!(exit_plan(&container(vec!["nginx"], vec![]), false), None);
        assert_eq!(exit_plan(&container(vec!["nginx"], vec![]), true), Some((Duration::from_secs(1), 0)));
        assert_eq!(
            exit_plan(&container(vec![], vec![("CAIRN_EXIT_AFTER", "0.5"), ("CAIRN_EXIT_CODE", "1")]), false),
            Some((Duration::from_millis(500), 1))
        );
        assert_eq!(exit_plan(&container(vec!["sleep", "infinity"], vec![]), false), None);
    }

    #[tokio::test]
    async fn t12_sandboxes_take_and_return_addresses_of_the_node_cidr() {
        let node = Ipv4Addr::new(127, 32, 0, 1);
        let runtime = SimRuntime::new(Ipv4Addr::new(127, 64, 3, 0), node, &[], Duration::ZERO);
        let (a, ip_a) = runtime.run_pod_sandbox(SandboxMeta::default(), false).expect("sandbox");
        let (_, ip_b) = runtime.run_pod_sandbox(SandboxMeta::default(), false).expect("sandbox");
        assert_eq!((ip_a, ip_b), (Ipv4Addr::new(127, 64, 3, 2), Ipv4Addr::new(127, 64, 3, 3)));
        assert_eq!(runtime.run_pod_sandbox(SandboxMeta::default(), true).expect("host network").1, node);
        runtime.remove_pod_sandbox(&a);
        assert_eq!(runtime.run_pod_sandbox(SandboxMeta::default(), false).expect("sandbox").1, ip_a);
        assert_eq!(runtime.sandbox_count(), 3);
    }

    #[tokio::test]
    async fn t13_containers_exit_as_planned_and_echo_containers_serve_their_pod_name() {
        let runtime = SimRuntime::new(Ipv4Addr::new(127, 64, 3, 0), Ipv4Addr::new(127, 32, 0, 1), &[], Duration::ZERO);
        let meta = SandboxMeta { name: "job-x".into(), ..SandboxMeta::default() };
        let (sandbox, _) = runtime.run_pod_sandbox(meta, false).expect("sandbox");
        let spec = ContainerSpec {
            name: "c".into(),
            image: "busybox".into(),
            ports: vec![],
            exit: Some((Duration::from_millis(200), 3)),
        };
        let id = runtime.create_container(&sandbox, spec);
        runtime.start_container(&id).await.expect("start");
        assert_eq!(runtime.container_status(&id).map(|c| c.state), Some(ContainerState::Running));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runtime.container_status(&id).map(|c| c.state), Some(ContainerState::Exited(3)));
        assert_eq!(runtime.list_containers().len(), 1);
        runtime.remove_container(&id);
        assert!(runtime.container_status(&id).is_none());
    }
}
