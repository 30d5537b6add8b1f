//! Workloads against any etcd-compatible endpoint, closed- or open-loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions};
use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Workload {
    Put,
    Range,
    TxnPut,
    WatchLatency,
    LeaseKeepalive,
    Mixed,
    /// Logins with --user's name and password (bcrypt on the server).
    Authenticate,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// Comma-separated client URLs.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// gRPC connections, shared by the clients.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Requests in all (ignored with --duration).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this many seconds instead of --total.
    #[arg(long)]
    pub duration: Option<u64>,
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys written or read.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Keys in order instead of random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Open loop at this many requests per second in all (0: closed loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Ranges are served locally by the member (range and mixed).
    #[arg(long)]
    pub serializable: bool,
    /// Each range reads every key, as a LIST of a whole resource does (range).
    #[arg(long)]
    pub whole_range: bool,
    /// `name:password`: log in once per connection and send the token, as etcdctl's --user.
    #[arg(long)]
    pub user: Option<String>,
}

impl LoadOptions {
    /// The benchmarks' puts: `total` 256-byte values at random keys of a
    /// 100,000-key space, closed loop, a connection per 4 clients up to 16.
    pub fn puts(endpoints: Vec<String>, clients: usize, total: u64) -> Self {
        Self {
            endpoints,
            conns: clients.div_ceil(4).clamp(1, 16),
            clients,
            total,
            duration: None,
            key_size: 8,
            val_size: 256,
            key_space_size: 100_000,
            sequential_keys: false,
            rate: 0.0,
            serializable: false,
            whole_range: false,
            user: None,
        }
    }

    fn credentials(&self) -> Result<Option<(String, String)>> {
        let Some(user) = &self.user else { return Ok(None) };
        let (name, password) = user.split_once(':').context("--user takes name:password")?;
        Ok(Some((name.to_string(), password.to_string())))
    }
}

/// What a run measured. Latencies are in nanoseconds.
pub struct Outcome {
    pub latencies: Histogram<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: precise well below 0.1 ms.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

fn key(options: &LoadOptions, n: u64, seed: &mut u64) -> String {
    let index = if options.sequential_keys {
        n % options.key_space_size.max(1)
    } else {
        // xorshift: cheap, and good enough to spread keys.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % options.key_space_size.max(1)
    };
    format!("{index:0width$}", width = options.key_size.max(1))
}

fn read_options(options: &LoadOptions) -> Option<GetOptions> {
    options.serializable.then(|| GetOptions::new().with_serializable())
}

pub async fn run(workload: Workload, options: &LoadOptions, show_progress: bool) -> Result<Outcome> {
    let credentials = options.credentials()?;
    let mut connections = Vec::new();
    for _ in 0..options.conns.max(1) {
        // A login measured as the workload goes without a token on the connection.
        let login = credentials.clone().filter(|_| workload != Workload::Authenticate);
        let connect = login.map(|(name, password)| ConnectOptions::new().with_user(name, password));
        let client = Client::connect(options.endpoints.clone(), connect).await.context("connecting")?;
        connections.push(client);
    }
    if workload == Workload::WatchLatency {
        return watch_latency(options, &connections[0]).await;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Clients set up first (a lease to keep alive); the clock starts once all
    // are ready, so that granting 10,000 leases is not counted as latency.
    let ready = Arc::new(tokio::sync::Barrier::new(options.clients.max(1) + 1));
    let (go, started) = tokio::sync::watch::channel(None::<Instant>);
    let total = if options.duration.is_some() { u64::MAX } else { options.total };
    let value = random_bytes(options.val_size);
    let mut tasks = Vec::new();
    for client_index in 0..options.clients.max(1) {
        let mut client = connections[client_index % connections.len()].clone();
        let options = options.clone();
        let (issued, done, value) = (issued.clone(), done.clone(), value.clone());
        let (ready, mut started) = (ready.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut errors = 0u64;
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (client_index as u64 + 1);
            let lease = if workload == Workload::LeaseKeepalive {
                let id = client.lease_grant(60, None).await.map(|lease| lease.id()).unwrap_or(0);
                Some(client.lease_keep_alive(id).await)
            } else {
                None
            };
            let (mut keeper, mut keepalives) = match lease {
                Some(Ok((keeper, stream))) => (Some(keeper), Some(stream)),
                _ => (None, None),
            };
            ready.wait().await;
            let Ok(start) = started.wait_for(Option::is_some).await.map(|at| at.unwrap_or_else(Instant::now)) else {
                return (latencies, errors);
            };
            let deadline = options.duration.map(|seconds| start + Duration::from_secs(seconds));
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= total || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                // Open loop: each request has its slot; latency counts from the slot,
                // so a stalled server is not hidden (no coordinated omission).
                let scheduled = if options.rate > 0.0 {
                    let slot = start + Duration::from_secs_f64(n as f64 / options.rate);
                    tokio::time::sleep_until(slot.into()).await;
                    slot
                } else {
                    Instant::now()
                };
                let key = key(&options, n, &mut seed);
                let outcome = match workload {
                    Workload::Put => client.put(key, value.clone(), None).await.map(|_| ()),
                    Workload::Range if options.whole_range => {
                        let get = GetOptions::new().with_from_key();
                        let get = if options.serializable { get.with_serializable() } else { get };
                        client.get("\0", Some(get)).await.map(|_| ())
                    }
                    Workload::Range => client.get(key, read_options(&options)).await.map(|_| ()),
                    Workload::TxnPut => {
                        client.txn(Txn::new().and_then([TxnOp::put(key, value.clone(), None)])).await.map(|_| ())
                    }
                    Workload::Mixed if n % 2 == 0 => client.put(key, value.clone(), None).await.map(|_| ()),
                    Workload::Mixed => client.get(key, read_options(&options)).await.map(|_| ()),
                    Workload::LeaseKeepalive => match (keeper.as_mut(), keepalives.as_mut()) {
                        (Some(keeper), Some(stream)) => match keeper.keep_alive().await {
                            Ok(()) => stream.message().await.map(|_| ()),
                            Err(err) => Err(err),
                        },
                        _ => Err(etcd_client::Error::InvalidArgs("no lease".into())),
                    },
                    Workload::Authenticate => match &options.credentials() {
                        Ok(Some((name, password))) => {
                            client.auth_client().authenticate(name.clone(), password.clone()).await.map(|_| ())
                        }
                        _ => Err(etcd_client::Error::InvalidArgs("authenticate needs --user".into())),
                    },
                    Workload::WatchLatency => unreachable!("handled above"),
                };
                match outcome {
                    Ok(()) => {
                        let nanos = scheduled.elapsed().as_nanos() as u64;
                        let _ = latencies.record(nanos.max(1_000));
                    }
                    Err(err) => {
                        // The first failure of each client, so that a run that fails says why.
                        if errors == 0 {
                            eprintln!("  client {client_index}: {err}");
                        }
                        errors += 1;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (latencies, errors)
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    go.send_replace(Some(start));
    let deadline = options.duration.map(|seconds| start + Duration::from_secs(seconds));
    let progress = show_progress.then(|| tokio::spawn(progress(done.clone(), stop.clone(), options.total, deadline)));
    let mut latencies = histogram();
    let mut errors = 0;
    for task in tasks {
        let (task_latencies, task_errors) = task.await.context("client task")?;
        latencies.add(&task_latencies).context("merging histograms")?;
        errors += task_errors;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Outcome { latencies, errors, elapsed })
}

/// A progress line on standard error, once a second.
/// One value for every put, random as etcd's benchmark tool makes it, so
/// that a store that compresses its blocks gains nothing from it.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    (0..len)
        .map(|_| {
            // splitmix64: good enough for bytes nobody reads.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

async fn progress(done: Arc<AtomicU64>, stop: Arc<AtomicBool>, total: u64, deadline: Option<Instant>) {
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let count = done.load(Ordering::Relaxed);
        let rate = count as f64 / start.elapsed().as_secs_f64();
        match deadline {
            Some(deadline) => eprintln!(
                "  {count} requests, {rate:.0}/s, {}s left",
                deadline.saturating_duration_since(Instant::now()).as_secs()
            ),
            None => eprintln!("  {count}/{total} requests ({}%), {rate:.0}/s", count * 100 / total.max(1)),
        }
    }
}

/// From a put until a watcher on another connection sees its event.
async fn watch_latency(options: &LoadOptions, client: &Client) -> Result<Outcome> {
    let mut watcher = client.clone();
    let mut writer = Client::connect(options.endpoints.clone(), None).await.context("connecting")?;
    let prefix = "watch-latency/";
    let mut stream = watcher.watch(prefix, Some(WatchOptions::new().with_prefix())).await.context("watching")?;
    let _created = stream.message().await?;
    let epoch = Instant::now();
    let total = options.total.min(100_000);
    let mut latencies = histogram();
    let mut errors = 0;
    let start = Instant::now();
    for n in 0..total {
        let sent = epoch.elapsed().as_nanos() as u64;
        if writer.put(format!("{prefix}{}", n % options.key_space_size.max(1)), sent.to_string(), None).await.is_err() {
            errors += 1;
            continue;
        }
        // Wait (bounded) for this put's event.
        let arrived = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let Ok(Some(resp)) = stream.message().await else { return false };
                for event in resp.events() {
                    let value = event.kv().and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse::<u64>().ok());
                    if value == Some(sent) {
                        let _ = latencies.record((epoch.elapsed().as_nanos() as u64 - sent).max(1_000));
                        return true;
                    }
                }
            }
        })
        .await;
        if !matches!(arrived, Ok(true)) {
            errors += 1;
        }
    }
    Ok(Outcome { latencies, errors, elapsed: start.elapsed() })
}
