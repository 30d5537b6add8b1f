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

/// When and how a simulated container exits on its own:
/// - env `CAIRN_EXIT_AFTER` (seconds) and `CAIRN_EXIT_CODE` say it directly;
/// - otherwise `sleep N` and `exit N` in its command and args are honoured
///   (`sh -c "sleep 2; exit 1"` runs 2 s and fails);
/// - otherwise a container of a Job's pod completes after one second, as kwok's
///   pod-complete stage does; every other container runs until stopped.
pub fn exit_plan(container: &Container, owned_by_job: bool) -> Option<(Duration, i32)> {
    let env = |name: &str| container.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone());
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

struct Sandbox {
    ip: Ipv4Addr,
}

struct RunningContainer {
    sandbox: String,
    servers: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    images: BTreeSet<String>,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, RunningContainer>,
    free: BTreeSet<u32>,
    next_id: u64,
}

/// One hollow node's runtime.
pub struct SimRuntime {
    state: Mutex<State>,
    pod_cidr: String,
    pull_delay: Duration,
}

impl SimRuntime {
    /// Pod IPs are the /24 `pod_cidr`'s .2 to .254.
    pub fn new(pod_cidr: Ipv4Addr, cached_images: &[String], pull_delay: Duration) -> Arc<SimRuntime> {
        let base = u32::from(pod_cidr) & 0xffff_ff00;
        let state = State {
            images: cached_images.iter().map(|i| normalize_image(i)).collect(),
            free: (base + 2..base + 255).collect(),
            ..State::default()
        };
        Arc::new(SimRuntime { state: Mutex::new(state), pod_cidr: format!("{}/24", Ipv4Addr::from(base)), pull_delay })
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
    pub async fn pull_image(&self, image: &str) -> Duration {
        let delay = if self.image_present(image) { Duration::from_millis(50) } else { self.pull_delay };
        tokio::time::sleep(delay).await;
        self.state.lock().images.insert(normalize_image(image));
        delay
    }

    /// RuntimeService.RunPodSandbox: returns the sandbox id and its IP.
    pub fn run_pod_sandbox(&self, host_ip: Option<Ipv4Addr>) -> Result<(String, Ipv4Addr), RuntimeError> {
        let mut state = self.state.lock();
        let ip = match host_ip {
            Some(ip) => ip,
            None => {
                let first = state.free.pop_first().ok_or_else(|| RuntimeError::NoAddress(self.pod_cidr.clone()))?;
                Ipv4Addr::from(first)
            }
        };
        state.next_id += 1;
        let id = format!("{:064x}", state.next_id);
        state.sandboxes.insert(id.clone(), Sandbox { ip });
        Ok((id, ip))
    }

    /// RuntimeService.StopPodSandbox + RemovePodSandbox: its containers stop, its IP is free again.
    pub fn remove_pod_sandbox(&self, id: &str) {
        let mut state = self.state.lock();
        let stopped: Vec<String> =
            state.containers.iter().filter(|(_, c)| c.sandbox == id).map(|(k, _)| k.clone()).collect();
        for container in stopped {
            if let Some(container) = state.containers.remove(&container) {
                container.servers.iter().for_each(JoinHandle::abort);
            }
        }
        if let Some(sandbox) = state.sandboxes.remove(id) {
            let ip = u32::from(sandbox.ip);
            let base = ip & 0xffff_ff00;
            if format!("{}/24", Ipv4Addr::from(base)) == self.pod_cidr {
                state.free.insert(ip);
            }
        }
    }

    /// RuntimeService.CreateContainer + StartContainer. An echo container
    /// listens on every containerPort of its pod IP.
    pub async fn start_container(
        &self,
        sandbox: &str,
        container: &Container,
        pod_name: &str,
    ) -> Result<String, RuntimeError> {
        let ip = self.state.lock().sandboxes.get(sandbox).map(|s| s.ip);
        let mut servers = Vec::new();
        if let (Some(ip), true) = (ip, is_echo(&container.image.clone().unwrap_or_default())) {
            for port in container.ports.iter().flatten() {
                let address = format!("{ip}:{}", port.container_port);
                let listener = TcpListener::bind(&address)
                    .await
                    .map_err(|source| RuntimeError::Listen { address: address.clone(), source })?;
                servers.push(tokio::spawn(serve_echo(listener, pod_name.to_string())));
            }
        }
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = format!("{:064x}", state.next_id);
        state.containers.insert(id.clone(), RunningContainer { sandbox: sandbox.to_string(), servers });
        Ok(id)
    }

    /// RuntimeService.StopContainer + RemoveContainer.
    pub fn stop_container(&self, id: &str) {
        if let Some(container) = self.state.lock().containers.remove(id) {
            container.servers.iter().for_each(JoinHandle::abort);
        }
    }

    /// RuntimeService.ListPodSandbox's count, for metrics and tests.
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
        let runtime = SimRuntime::new(Ipv4Addr::new(127, 64, 3, 0), &[], Duration::ZERO);
        let (a, ip_a) = runtime.run_pod_sandbox(None).expect("sandbox");
        let (_, ip_b) = runtime.run_pod_sandbox(None).expect("sandbox");
        assert_eq!((ip_a, ip_b), (Ipv4Addr::new(127, 64, 3, 2), Ipv4Addr::new(127, 64, 3, 3)));
        runtime.remove_pod_sandbox(&a);
        assert_eq!(runtime.run_pod_sandbox(None).expect("sandbox").1, ip_a);
        assert_eq!(runtime.sandbox_count(), 2);
    }
}
