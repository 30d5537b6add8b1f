//! Leader election on a coordination Lease, as client-go's leaderelection
//! does it: a candidate takes the Lease once its holder has not renewed it for
//! a lease duration *as observed locally* (no clock is compared across
//! machines), the leader renews every retry period, and a leader that cannot
//! renew within the renew deadline stops.
//!
//! client-go stops a leader only when its renew loop notices. A leader that was
//! paused (SIGSTOP, a long GC, a stalled VM) resumes with its work tasks ready
//! to write before that loop runs. So the work here writes through a [`Gate`]
//! that closes a renew deadline after the last renewal was *sent*: by then no
//! other candidate can have taken the lease, since it waits a whole lease
//! duration after it *saw* that renewal.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Args;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use super::ClientError;
use crate::config::parse_duration;

/// kube's leader-election flags, shared by the controller-manager and the scheduler.
#[derive(Args, Clone, Debug)]
pub struct LeaderElectionFlags {
    #[arg(long = "leader-elect", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// This replica's name in the Lease; the host name and process id by default.
    #[arg(long = "leader-elect-identity")]
    pub identity: Option<String>,
}

impl LeaderElectionFlags {
    pub fn timing(&self) -> Timing {
        Timing {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}_{}", host.trim(), std::process::id())
        })
    }
}

impl LeaderElectionFlags {
    /// Runs `work` under the named lease in kube-system (or at once, with
    /// `--leader-elect=false`). `work` gets a client whose writes pass only
    /// while this replica leads; the election has a connection of its own.
    pub async fn run<F: Future<Output = Result<(), ClientError>>>(
        &self,
        kubeconfig: &std::path::Path,
        user_agent: &str,
        lease: &str,
        work: impl FnOnce(Client) -> F,
    ) -> Result<(), ClientError> {
        if !self.leader_elect {
            return work(super::connect(kubeconfig, user_agent).await?).await;
        }
        let gate = Gate::default();
        let client = super::connect_gated(kubeconfig, user_agent, gate.clone()).await?;
        let election_client = super::connect(kubeconfig, user_agent).await?;
        let elector = Elector::new(election_client, "kube-system", lease, &self.identity(), self.timing());
        run_elected(elector.gated(gate), || work(client)).await
    }
}

#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    /// kube-controller-manager's and kube-scheduler's defaults.
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the candidate last saw of the lease, and when (by its own clock).
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: String,
    renew_time: Option<String>,
    at: Instant,
}

/// What to do with the lease as read now.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Write the lease naming us (a takeover counts a transition).
    Take { transition: bool },
    /// Someone else holds a live lease.
    Wait,
}

fn decide(me: &str, holder: &str, observed: &Observed, now: Instant, duration: Duration) -> Decision {
    if holder.is_empty() {
        return Decision::Take { transition: true };
    }
    if holder == me {
        return Decision::Take { transition: false };
    }
    if now.duration_since(observed.at) >= duration {
        Decision::Take { transition: true }
    } else {
        Decision::Wait
    }
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
    gate: Gate,
}

/// Until when this replica may write as the leader: a renew deadline after
/// the last successful renewal was sent. Closed until the lease is first held.
#[derive(Clone, Default, Debug)]
pub struct Gate(Arc<Mutex<Option<Instant>>>);

impl Gate {
    pub fn is_open(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|until| Instant::now() < until)
    }

    fn open_until(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn close(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Refused at the gate: this replica no longer (or not yet) leads.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: the lease was last renewed more than the renew deadline ago")]
pub struct NotLeader;

/// A client service that lets reads through and writes only while the gate is open.
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S> Gated<S> {
    pub fn new(inner: S, gate: Gate) -> Gated<S> {
        Gated { inner, gate }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Error = tower::BoxError>,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.method() != http::Method::GET && !self.gate.is_open() {
            return Box::pin(std::future::ready(Err(NotLeader.into())));
        }
        Box::pin(self.inner.call(request))
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
            gate: Gate::default(),
        }
    }

    /// Opens `gate` for the work while this elector holds the lease.
    pub fn gated(mut self, gate: Gate) -> Elector {
        self.gate = gate;
        self
    }

    /// One attempt to acquire or renew; true when we hold the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let stamp = super::micro_time_text(super::now());
        let seconds = self.timing.lease_duration.as_secs() as i32;
        let held = self.write_lease(now, &stamp, seconds).await?;
        if held {
            self.gate.open_until(now + self.timing.renew_deadline);
        }
        Ok(held)
    }

    async fn write_lease(&mut self, now: Instant, stamp: &str, seconds: i32) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = crate::client::from_json(json!({
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": seconds,
                         "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0},
            }))?;
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if super::is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew_time = spec.renew_time.as_ref().map(|t| t.0.to_string());
        // Seen once the read returned: a renewal written during the read counts from here.
        let seen = Observed { holder: holder.clone(), renew_time, at: Instant::now() };
        let observed = match &self.observed {
            Some(old) if old.holder == seen.holder && old.renew_time == seen.renew_time => old.clone(),
            _ => seen,
        };
        self.observed = Some(observed.clone());
        let Decision::Take { transition } = decide(&self.identity, &holder, &observed, now, self.timing.lease_duration)
        else {
            return Ok(false);
        };
        let mut updated = crate::client::to_json(&lease)?;
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(transition);
        updated["spec"]["holderIdentity"] = json!(self.identity);
        updated["spec"]["leaseDurationSeconds"] = json!(seconds);
        updated["spec"]["renewTime"] = json!(stamp);
        updated["spec"]["leaseTransitions"] = json!(transitions);
        if transition {
            updated["spec"]["acquireTime"] = json!(stamp);
        }
        // The resourceVersion in the body makes this a compare-and-swap.
        match self.api.replace(&self.name, &PostParams::default(), &crate::client::from_json(updated)?).await {
            Ok(_) => {
                self.observed = None;
                Ok(true)
            }
            Err(e) if super::is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate leads; retries every retry period.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                    return;
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "leader election attempt failed"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews until a renewal fails for longer than the renew deadline.
    pub async fn hold(&mut self) -> ClientError {
        let lost = self.renew_until_lost().await;
        self.gate.close();
        lost
    }

    async fn renew_until_lost(&mut self) -> ClientError {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            // One attempt may not outlast the deadline, as client-go bounds it.
            let attempt = tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => {
                    return ClientError::LeaderLost(format!("lease {} taken by another holder", self.name))
                }
                Ok(Err(error)) => tracing::warn!(%error, "renewing the leader lease failed"),
                Err(_) => tracing::warn!("renewing the leader lease timed out"),
            }
            if last_renewal.elapsed() >= self.timing.renew_deadline {
                return ClientError::LeaderLost(format!("lease {} not renewed within the deadline", self.name));
            }
        }
    }
}

/// Runs `work` while this process leads; returns when leadership is lost
/// (the process should then exit, as kube's components do), or when `work` ends.
pub async fn run_elected<F: Future<Output = Result<(), ClientError>>>(
    mut elector: Elector,
    work: impl FnOnce() -> F,
) -> Result<(), ClientError> {
    elector.acquire().await;
    tokio::select! {
        lost = elector.hold() => Err(lost),
        done = work() => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_a_live_lease_of_another_holder_is_left_alone_until_it_expires_locally() {
        let start = Instant::now();
        let observed = Observed { holder: "b".into(), renew_time: Some("t".into()), at: start };
        let d = Duration::from_secs(15);
        assert_eq!(decide("a", "b", &observed, start + Duration::from_secs(14), d), Decision::Wait);
        assert_eq!(decide("a", "b", &observed, start + d, d), Decision::Take { transition: true });
        assert_eq!(decide("b", "b", &observed, start, d), Decision::Take { transition: false });
        assert_eq!(decide("a", "", &observed, start, d), Decision::Take { transition: true });
    }

    #[tokio::test]
    async fn t11_the_gate_lets_writes_through_only_until_the_renew_deadline() {
        use tower::{Service, ServiceExt};
        let gate = Gate::default();
        let inner = tower::service_fn(|_: http::Request<()>| async { Ok::<_, tower::BoxError>("sent") });
        let mut gated = Gated::new(inner, gate.clone());
        let request = |method: http::Method| http::Request::builder().method(method).body(()).expect("request");
        let mut call = |method| {
            let future = gated.call(request(method));
            async move { future.await.is_ok() }
        };
        // Closed before the lease was ever held: reads pass, writes do not.
        assert!(call(http::Method::GET).await);
        assert!(!call(http::Method::POST).await);
        gate.open_until(Instant::now() + Duration::from_secs(60));
        assert!(call(http::Method::PUT).await);
        // Past the deadline (a paused leader that just resumed), and once lost.
        gate.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!call(http::Method::PATCH).await);
        gate.open_until(Instant::now() + Duration::from_secs(60));
        gate.close();
        assert!(!call(http::Method::DELETE).await);
        assert!(gated.ready().await.is_ok());
    }
}
