//! The CRI (`runtime.v1` RuntimeService and ImageService) between a hollow
//! kubelet and its runtime. `Runtime` is the kubelet's side: the built-in
//! simulated runtime in-process, or any CRI runtime on a unix socket.
//! `serve` puts the simulated runtime on a socket, where the kubelet reaches
//! it through gRPC like any other runtime, and where `crictl` can inspect it.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::runtime::{ContainerSpec, ContainerState, RuntimeError, SandboxMeta, SimRuntime};

/// The kubelet's view of its container runtime.
pub enum Runtime {
    Local(Arc<SimRuntime>),
    #[cfg(cri_grpc)]
    Remote(Box<remote::RemoteRuntime>),
}

impl Runtime {
    pub async fn image_present(&self, image: &str) -> bool {
        match self {
            Runtime::Local(sim) => sim.image_present(image),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.image_present(image).await,
        }
    }

    /// Pulls; returns how long it took.
    pub async fn pull_image(&self, image: &str) -> Result<Duration, RuntimeError> {
        let started = Instant::now();
        match self {
            Runtime::Local(sim) => sim.pull_image(image).await,
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.pull_image(image).await?,
        }
        Ok(started.elapsed())
    }

    pub async fn images(&self) -> Vec<String> {
        match self {
            Runtime::Local(sim) => sim.images(),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.images().await,
        }
    }

    pub async fn run_pod_sandbox(
        &self,
        meta: SandboxMeta,
        host_network: bool,
    ) -> Result<(String, Ipv4Addr), RuntimeError> {
        match self {
            Runtime::Local(sim) => sim.run_pod_sandbox(meta, host_network),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.run_pod_sandbox(meta, host_network).await,
        }
    }

    pub async fn remove_pod_sandbox(&self, id: &str) {
        match self {
            Runtime::Local(sim) => sim.remove_pod_sandbox(id),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.remove_pod_sandbox(id).await,
        }
    }

    /// CreateContainer and StartContainer.
    pub async fn start_container(&self, sandbox: &str, spec: ContainerSpec) -> Result<String, RuntimeError> {
        match self {
            Runtime::Local(sim) => {
                let id = sim.create_container(sandbox, spec);
                sim.start_container(&id).await?;
                Ok(id)
            }
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.start_container(sandbox, spec).await,
        }
    }

    /// StopContainer with the exit code a kill gives, then RemoveContainer.
    pub async fn stop_container(&self, id: &str, exit_code: i32) {
        match self {
            Runtime::Local(sim) => sim.stop_container(id, exit_code),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.stop_container(id).await,
        }
    }

    /// ContainerStatus's state.
    pub async fn container_state(&self, id: &str) -> Option<ContainerState> {
        match self {
            Runtime::Local(sim) => sim.container_status(id).map(|c| c.state),
            #[cfg(cri_grpc)]
            Runtime::Remote(cri) => cri.container_state(id).await,
        }
    }
}

/// The annotation with a container's ports, as the real kubelet writes it.
pub const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";

#[cfg(cri_grpc)]
#[allow(clippy::all, clippy::pedantic)]
pub mod api {
    tonic::include_proto!("runtime.v1");
}

#[cfg(cri_grpc)]
pub use server::serve;

#[cfg(cri_grpc)]
mod server {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Container, EnvVar};
    use tonic::{Request, Response, Status};

    use super::api;
    use crate::kubelet::runtime::{
        self, ContainerInfo, ContainerSpec, ContainerState, SandboxInfo, SandboxMeta, SimRuntime,
    };

    type Reply<T> = Result<Response<T>, Status>;

    fn unsimulated(rpc: &str) -> Status {
        Status::unimplemented(format!("{rpc} is not simulated by cairn-sim"))
    }

    pub struct CriServer {
        runtime: Arc<SimRuntime>,
    }

    fn container_state(state: ContainerState) -> i32 {
        match state {
            ContainerState::Created => api::ContainerState::ContainerCreated as i32,
            ContainerState::Running => api::ContainerState::ContainerRunning as i32,
            ContainerState::Exited(_) => api::ContainerState::ContainerExited as i32,
        }
    }

    fn sandbox_metadata(meta: &SandboxMeta) -> api::PodSandboxMetadata {
        api::PodSandboxMetadata {
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            attempt: 0,
        }
    }

    fn sandbox_state(sandbox: &SandboxInfo) -> i32 {
        if sandbox.ready {
            api::PodSandboxState::SandboxReady as i32
        } else {
            api::PodSandboxState::SandboxNotready as i32
        }
    }

    fn image_spec(image: &str) -> api::ImageSpec {
        api::ImageSpec { image: runtime::normalize_image(image), ..Default::default() }
    }

    fn image_of(image: &str) -> api::Image {
        api::Image {
            id: format!("sha256:{}", runtime::image_id(image).rsplit(':').next().unwrap_or_default()),
            repo_tags: vec![runtime::normalize_image(image)],
            repo_digests: vec![runtime::image_id(image)],
            size: 10_000_000,
            spec: Some(image_spec(image)),
            ..Default::default()
        }
    }

    /// The labels the real kubelet puts on a container, which crictl shows.
    fn container_labels(c: &ContainerInfo, sandbox: Option<&SandboxInfo>) -> HashMap<String, String> {
        let mut labels = HashMap::from([("io.kubernetes.container.name".to_string(), c.spec.name.clone())]);
        if let Some(sandbox) = sandbox {
            labels.insert("io.kubernetes.pod.name".into(), sandbox.meta.name.clone());
            labels.insert("io.kubernetes.pod.namespace".into(), sandbox.meta.namespace.clone());
            labels.insert("io.kubernetes.pod.uid".into(), sandbox.meta.uid.clone());
        }
        labels
    }

    fn container_of(c: &ContainerInfo, sandbox: Option<&SandboxInfo>) -> api::Container {
        api::Container {
            labels: container_labels(c, sandbox),
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox.clone(),
            metadata: Some(api::ContainerMetadata { name: c.spec.name.clone(), attempt: 0 }),
            image: Some(image_spec(&c.spec.image)),
            image_ref: runtime::image_id(&c.spec.image),
            state: container_state(c.state),
            created_at: c.created_ns,
            ..Default::default()
        }
    }

    /// A Job's pod is marked by the label the Job controller puts on it.
    fn job_pod(labels: &HashMap<String, String>) -> bool {
        labels.contains_key("batch.kubernetes.io/job-name") || labels.contains_key("job-name")
    }

    #[tonic::async_trait]
    impl api::runtime_service_server::RuntimeService for CriServer {
        async fn version(&self, _: Request<api::VersionRequest>) -> Reply<api::VersionResponse> {
            Ok(Response::new(api::VersionResponse {
                version: "0.1.0".into(),
                runtime_name: "cairn-sim".into(),
                runtime_version: env!("CARGO_PKG_VERSION").into(),
                runtime_api_version: "v1".into(),
            }))
        }

        async fn run_pod_sandbox(
            &self,
            request: Request<api::RunPodSandboxRequest>,
        ) -> Reply<api::RunPodSandboxResponse> {
            let config = request.into_inner().config.unwrap_or_default();
            let metadata = config.metadata.unwrap_or_default();
            let host_network = config
                .linux
                .and_then(|l| l.security_context)
                .and_then(|s| s.namespace_options)
                .is_some_and(|n| n.network == api::NamespaceMode::Node as i32);
            let meta = SandboxMeta {
                name: metadata.name,
                namespace: metadata.namespace,
                uid: metadata.uid,
                labels: config.labels.into_iter().collect(),
            };
            let (id, _) = self
                .runtime
                .run_pod_sandbox(meta, host_network)
                .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            Ok(Response::new(api::RunPodSandboxResponse { pod_sandbox_id: id }))
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<api::StopPodSandboxRequest>,
        ) -> Reply<api::StopPodSandboxResponse> {
            self.runtime.stop_pod_sandbox(&request.into_inner().pod_sandbox_id);
            Ok(Response::new(api::StopPodSandboxResponse {}))
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<api::RemovePodSandboxRequest>,
        ) -> Reply<api::RemovePodSandboxResponse> {
            self.runtime.remove_pod_sandbox(&request.into_inner().pod_sandbox_id);
            Ok(Response::new(api::RemovePodSandboxResponse {}))
        }

        async fn pod_sandbox_status(
            &self,
            request: Request<api::PodSandboxStatusRequest>,
        ) -> Reply<api::PodSandboxStatusResponse> {
            let id = request.into_inner().pod_sandbox_id;
            let sandbox = self
                .runtime
                .list_sandboxes()
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| Status::not_found(format!("sandbox {id} not found")))?;
            let status = api::PodSandboxStatus {
                id: sandbox.id.clone(),
                metadata: Some(sandbox_metadata(&sandbox.meta)),
                state: sandbox_state(&sandbox),
                created_at: sandbox.created_ns,
                network: Some(api::PodSandboxNetworkStatus { ip: sandbox.ip.to_string(), additional_ips: Vec::new() }),
                labels: sandbox.meta.labels.clone().into_iter().collect(),
                ..Default::default()
            };
            Ok(Response::new(api::PodSandboxStatusResponse { status: Some(status), ..Default::default() }))
        }

        async fn list_pod_sandbox(
            &self,
            request: Request<api::ListPodSandboxRequest>,
        ) -> Reply<api::ListPodSandboxResponse> {
            let filter = request.into_inner().filter.unwrap_or_default();
            let items = self
                .runtime
                .list_sandboxes()
                .iter()
                .filter(|s| filter.id.is_empty() || s.id.starts_with(&filter.id))
                .filter(|s| filter.state.as_ref().is_none_or(|v| v.state == sandbox_state(s)))
                .filter(|s| filter.label_selector.iter().all(|(k, v)| s.meta.labels.get(k) == Some(v)))
                .map(|s| api::PodSandbox {
                    id: s.id.clone(),
                    metadata: Some(sandbox_metadata(&s.meta)),
                    state: sandbox_state(s),
                    created_at: s.created_ns,
                    labels: s.meta.labels.clone().into_iter().collect(),
                    ..Default::default()
                })
                .collect();
            Ok(Response::new(api::ListPodSandboxResponse { items }))
        }

        async fn create_container(
            &self,
            request: Request<api::CreateContainerRequest>,
        ) -> Reply<api::CreateContainerResponse> {
            let request = request.into_inner();
            let config = request.config.unwrap_or_default();
            let sandbox_labels = request.sandbox_config.map(|c| c.labels).unwrap_or_default();
            let ports: Vec<i32> = config
                .annotations
                .get(super::PORTS_ANNOTATION)
                .and_then(|text| serde_json::from_str::<Vec<serde_json::Value>>(text).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p["containerPort"].as_i64().map(|n| n as i32))
                .collect();
            let container = Container {
                command: Some(config.command.clone()),
                args: Some(config.args.clone()),
                env: Some(
                    config
                        .envs
                        .iter()
                        .map(|e| EnvVar { name: e.key.clone(), value: Some(e.value.clone()), ..Default::default() })
                        .collect(),
                ),
                ..Default::default()
            };
            let spec = ContainerSpec {
                name: config.metadata.map(|m| m.name).unwrap_or_default(),
                image: config.image.map(|i| i.image).unwrap_or_default(),
                ports,
                exit: runtime::exit_plan(&container, job_pod(&sandbox_labels)),
            };
            let id = self.runtime.create_container(&request.pod_sandbox_id, spec);
            Ok(Response::new(api::CreateContainerResponse { container_id: id }))
        }

        async fn start_container(
            &self,
            request: Request<api::StartContainerRequest>,
        ) -> Reply<api::StartContainerResponse> {
            self.runtime
                .start_container(&request.into_inner().container_id)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(api::StartContainerResponse {}))
        }

        async fn stop_container(
            &self,
            request: Request<api::StopContainerRequest>,
        ) -> Reply<api::StopContainerResponse> {
            self.runtime.stop_container(&request.into_inner().container_id, 0);
            Ok(Response::new(api::StopContainerResponse {}))
        }

        async fn remove_container(
            &self,
            request: Request<api::RemoveContainerRequest>,
        ) -> Reply<api::RemoveContainerResponse> {
            self.runtime.remove_container(&request.into_inner().container_id);
            Ok(Response::new(api::RemoveContainerResponse {}))
        }

        async fn list_containers(
            &self,
            request: Request<api::ListContainersRequest>,
        ) -> Reply<api::ListContainersResponse> {
            let filter = request.into_inner().filter.unwrap_or_default();
            let sandboxes: HashMap<String, SandboxInfo> =
                self.runtime.list_sandboxes().into_iter().map(|s| (s.id.clone(), s)).collect();
            let containers = self
                .runtime
                .list_containers()
                .iter()
                .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
                .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox.starts_with(&filter.pod_sandbox_id))
                .filter(|c| filter.state.as_ref().is_none_or(|v| v.state == container_state(c.state)))
                .map(|c| container_of(c, sandboxes.get(&c.sandbox)))
                .collect();
            Ok(Response::new(api::ListContainersResponse { containers }))
        }

        async fn container_status(
            &self,
            request: Request<api::ContainerStatusRequest>,
        ) -> Reply<api::ContainerStatusResponse> {
            let id = request.into_inner().container_id;
            let c = self
                .runtime
                .container_status(&id)
                .ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
            let exit_code = match c.state {
                ContainerState::Exited(code) => code,
                _ => 0,
            };
            let sandbox = self.runtime.list_sandboxes().into_iter().find(|s| s.id == c.sandbox);
            let status = api::ContainerStatus {
                labels: container_labels(&c, sandbox.as_ref()),
                id: c.id.clone(),
                metadata: Some(api::ContainerMetadata { name: c.spec.name.clone(), attempt: 0 }),
                state: container_state(c.state),
                created_at: c.created_ns,
                started_at: c.started_ns,
                finished_at: c.finished_ns,
                exit_code,
                image: Some(image_spec(&c.spec.image)),
                image_ref: runtime::image_id(&c.spec.image),
                reason: match c.state {
                    ContainerState::Exited(0) => "Completed".into(),
                    ContainerState::Exited(_) => "Error".into(),
                    _ => String::new(),
                },
                ..Default::default()
            };
            Ok(Response::new(api::ContainerStatusResponse { status: Some(status), ..Default::default() }))
        }

        async fn status(&self, _: Request<api::StatusRequest>) -> Reply<api::StatusResponse> {
            let ready = |kind: &str| api::RuntimeCondition { r#type: kind.into(), status: true, ..Default::default() };
            Ok(Response::new(api::StatusResponse {
                status: Some(api::RuntimeStatus { conditions: vec![ready("RuntimeReady"), ready("NetworkReady")] }),
                ..Default::default()
            }))
        }

        type GetContainerEventsStream =
            std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<api::ContainerEventResponse, Status>> + Send>>;

        async fn get_container_events(
            &self,
            _: Request<api::GetEventsRequest>,
        ) -> Reply<Self::GetContainerEventsStream> {
            Err(unsimulated("GetContainerEvents"))
        }

        async fn update_container_resources(
            &self,
            _: Request<api::UpdateContainerResourcesRequest>,
        ) -> Reply<api::UpdateContainerResourcesResponse> {
            Err(unsimulated("UpdateContainerResources"))
        }

        async fn reopen_container_log(
            &self,
            _: Request<api::ReopenContainerLogRequest>,
        ) -> Reply<api::ReopenContainerLogResponse> {
            Err(unsimulated("ReopenContainerLog"))
        }

        async fn exec_sync(&self, _: Request<api::ExecSyncRequest>) -> Reply<api::ExecSyncResponse> {
            Err(unsimulated("ExecSync"))
        }

        async fn exec(&self, _: Request<api::ExecRequest>) -> Reply<api::ExecResponse> {
            Err(unsimulated("Exec"))
        }

        async fn attach(&self, _: Request<api::AttachRequest>) -> Reply<api::AttachResponse> {
            Err(unsimulated("Attach"))
        }

        async fn port_forward(&self, _: Request<api::PortForwardRequest>) -> Reply<api::PortForwardResponse> {
            Err(unsimulated("PortForward"))
        }

        async fn container_stats(&self, _: Request<api::ContainerStatsRequest>) -> Reply<api::ContainerStatsResponse> {
            Err(unsimulated("ContainerStats"))
        }

        async fn list_container_stats(
            &self,
            _: Request<api::ListContainerStatsRequest>,
        ) -> Reply<api::ListContainerStatsResponse> {
            Err(unsimulated("ListContainerStats"))
        }

        async fn pod_sandbox_stats(
            &self,
            _: Request<api::PodSandboxStatsRequest>,
        ) -> Reply<api::PodSandboxStatsResponse> {
            Err(unsimulated("PodSandboxStats"))
        }

        async fn list_pod_sandbox_stats(
            &self,
            _: Request<api::ListPodSandboxStatsRequest>,
        ) -> Reply<api::ListPodSandboxStatsResponse> {
            Err(unsimulated("ListPodSandboxStats"))
        }

        async fn update_runtime_config(
            &self,
            _: Request<api::UpdateRuntimeConfigRequest>,
        ) -> Reply<api::UpdateRuntimeConfigResponse> {
            Err(unsimulated("UpdateRuntimeConfig"))
        }

        async fn checkpoint_container(
            &self,
            _: Request<api::CheckpointContainerRequest>,
        ) -> Reply<api::CheckpointContainerResponse> {
            Err(unsimulated("CheckpointContainer"))
        }

        async fn list_metric_descriptors(
            &self,
            _: Request<api::ListMetricDescriptorsRequest>,
        ) -> Reply<api::ListMetricDescriptorsResponse> {
            Err(unsimulated("ListMetricDescriptors"))
        }

        async fn list_pod_sandbox_metrics(
            &self,
            _: Request<api::ListPodSandboxMetricsRequest>,
        ) -> Reply<api::ListPodSandboxMetricsResponse> {
            Err(unsimulated("ListPodSandboxMetrics"))
        }

        async fn runtime_config(&self, _: Request<api::RuntimeConfigRequest>) -> Reply<api::RuntimeConfigResponse> {
            Err(unsimulated("RuntimeConfig"))
        }

        async fn update_pod_sandbox_resources(
            &self,
            _: Request<api::UpdatePodSandboxResourcesRequest>,
        ) -> Reply<api::UpdatePodSandboxResourcesResponse> {
            Err(unsimulated("UpdatePodSandboxResources"))
        }
    }

    #[tonic::async_trait]
    impl api::image_service_server::ImageService for CriServer {
        async fn list_images(&self, _: Request<api::ListImagesRequest>) -> Reply<api::ListImagesResponse> {
            Ok(Response::new(api::ListImagesResponse {
                images: self.runtime.images().iter().map(|i| image_of(i)).collect(),
            }))
        }

        async fn image_status(&self, request: Request<api::ImageStatusRequest>) -> Reply<api::ImageStatusResponse> {
            let image = request.into_inner().image.map(|i| i.image).unwrap_or_default();
            let found = self.runtime.image_present(&image).then(|| image_of(&image));
            Ok(Response::new(api::ImageStatusResponse { image: found, ..Default::default() }))
        }

        async fn pull_image(&self, request: Request<api::PullImageRequest>) -> Reply<api::PullImageResponse> {
            let image = request.into_inner().image.map(|i| i.image).unwrap_or_default();
            self.runtime.pull_image(&image).await;
            Ok(Response::new(api::PullImageResponse { image_ref: runtime::image_id(&image) }))
        }

        async fn remove_image(&self, request: Request<api::RemoveImageRequest>) -> Reply<api::RemoveImageResponse> {
            self.runtime.remove_image(&request.into_inner().image.map(|i| i.image).unwrap_or_default());
            Ok(Response::new(api::RemoveImageResponse {}))
        }

        async fn image_fs_info(&self, _: Request<api::ImageFsInfoRequest>) -> Reply<api::ImageFsInfoResponse> {
            Ok(Response::new(api::ImageFsInfoResponse::default()))
        }
    }

    /// Serves the runtime on a unix socket (replacing a stale one) until the task is dropped.
    pub fn serve(runtime: Arc<SimRuntime>, socket: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        let server = CriServer { runtime };
        let router = tonic::transport::Server::builder()
            .add_service(api::runtime_service_server::RuntimeServiceServer::new(CriServer {
                runtime: server.runtime.clone(),
            }))
            .add_service(api::image_service_server::ImageServiceServer::new(server));
        Ok(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            if let Err(error) = router.serve_with_incoming(incoming).await {
                tracing::warn!(%error, "the CRI server stopped");
            }
        }))
    }
}

#[cfg(cri_grpc)]
pub mod remote {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::time::Duration;

    use tonic::transport::{Channel, Endpoint, Uri};

    use super::api;
    use super::api::image_service_client::ImageServiceClient;
    use super::api::runtime_service_client::RuntimeServiceClient;
    use crate::kubelet::runtime::{ContainerSpec, ContainerState, RuntimeError, SandboxMeta};

    /// A CRI runtime on a unix socket.
    #[derive(Clone)]
    pub struct RemoteRuntime {
        runtime: RuntimeServiceClient<Channel>,
        images: ImageServiceClient<Channel>,
    }

    fn cri_error(status: tonic::Status) -> RuntimeError {
        RuntimeError::Cri(status.message().to_string())
    }

    impl RemoteRuntime {
        /// Connects lazily to `unix:///path` (or a bare path).
        pub fn connect(endpoint: &str) -> Result<RemoteRuntime, RuntimeError> {
            let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
            let channel = Endpoint::try_from("http://cri.local")
                .map_err(|e| RuntimeError::Cri(e.to_string()))?
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
                }));
            Ok(RemoteRuntime {
                runtime: RuntimeServiceClient::new(channel.clone()),
                images: ImageServiceClient::new(channel),
            })
        }

        pub async fn image_present(&self, image: &str) -> bool {
            let request = api::ImageStatusRequest {
                image: Some(api::ImageSpec { image: image.into(), ..Default::default() }),
                verbose: false,
            };
            self.images.clone().image_status(request).await.is_ok_and(|r| r.into_inner().image.is_some())
        }

        pub async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
            let request = api::PullImageRequest {
                image: Some(api::ImageSpec { image: image.into(), ..Default::default() }),
                ..Default::default()
            };
            self.images.clone().pull_image(request).await.map_err(cri_error)?;
            Ok(())
        }

        pub async fn images(&self) -> Vec<String> {
            match self.images.clone().list_images(api::ListImagesRequest::default()).await {
                Ok(list) => list.into_inner().images.into_iter().flat_map(|i| i.repo_tags).collect(),
                Err(_) => Vec::new(),
            }
        }

        pub async fn run_pod_sandbox(
            &self,
            meta: SandboxMeta,
            host_network: bool,
        ) -> Result<(String, Ipv4Addr), RuntimeError> {
            let network = if host_network { api::NamespaceMode::Node } else { api::NamespaceMode::Pod };
            let config = api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: meta.name.clone(),
                    uid: meta.uid.clone(),
                    namespace: meta.namespace.clone(),
                    attempt: 0,
                }),
                hostname: meta.name.clone(),
                labels: meta.labels.clone().into_iter().collect(),
                linux: Some(api::LinuxPodSandboxConfig {
                    security_context: Some(api::LinuxSandboxSecurityContext {
                        namespace_options: Some(api::NamespaceOption { network: network as i32, ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut client = self.runtime.clone();
            let request = api::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
            let id = client.run_pod_sandbox(request).await.map_err(cri_error)?.into_inner().pod_sandbox_id;
            let status = client
                .pod_sandbox_status(api::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false })
                .await
                .map_err(cri_error)?
                .into_inner();
            let ip = status
                .status
                .and_then(|s| s.network)
                .and_then(|n| n.ip.parse().ok())
                .ok_or_else(|| RuntimeError::Cri(format!("sandbox {id} has no IP")))?;
            Ok((id, ip))
        }

        pub async fn remove_pod_sandbox(&self, id: &str) {
            let mut client = self.runtime.clone();
            let _ = client.stop_pod_sandbox(api::StopPodSandboxRequest { pod_sandbox_id: id.into() }).await;
            let _ = client.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await;
        }

        pub async fn start_container(&self, sandbox: &str, spec: ContainerSpec) -> Result<String, RuntimeError> {
            let ports: Vec<serde_json::Value> =
                spec.ports.iter().map(|p| serde_json::json!({"containerPort": p, "protocol": "TCP"})).collect();
            let mut annotations = std::collections::HashMap::new();
            annotations.insert(super::PORTS_ANNOTATION.to_string(), serde_json::Value::from(ports).to_string());
            let envs = match spec.exit {
                Some((after, code)) => vec![
                    api::KeyValue { key: "CAIRN_EXIT_AFTER".into(), value: after.as_secs_f64().to_string() },
                    api::KeyValue { key: "CAIRN_EXIT_CODE".into(), value: code.to_string() },
                ],
                None => Vec::new(),
            };
            let config = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata { name: spec.name.clone(), attempt: 0 }),
                image: Some(api::ImageSpec { image: spec.image.clone(), ..Default::default() }),
                envs,
                annotations,
                ..Default::default()
            };
            let mut client = self.runtime.clone();
            let request = api::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: None,
            };
            let id = client.create_container(request).await.map_err(cri_error)?.into_inner().container_id;
            client.start_container(api::StartContainerRequest { container_id: id.clone() }).await.map_err(cri_error)?;
            Ok(id)
        }

        pub async fn stop_container(&self, id: &str) {
            let mut client = self.runtime.clone();
            let _ = client.stop_container(api::StopContainerRequest { container_id: id.into(), timeout: 0 }).await;
            let _ = client.remove_container(api::RemoveContainerRequest { container_id: id.into() }).await;
        }

        pub async fn container_state(&self, id: &str) -> Option<ContainerState> {
            let status = self
                .runtime
                .clone()
                .container_status(api::ContainerStatusRequest { container_id: id.into(), verbose: false })
                .await
                .ok()?;
            let status = status.into_inner().status?;
            Some(match api::ContainerState::try_from(status.state) {
                Ok(api::ContainerState::ContainerRunning) => ContainerState::Running,
                Ok(api::ContainerState::ContainerExited) => ContainerState::Exited(status.exit_code),
                _ => ContainerState::Created,
            })
        }
    }
}
