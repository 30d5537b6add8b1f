//! The nemesis: plays the seeded schedule against a target, one fault at a
//! time, and records the timeline. The store's cluster is one target; the
//! whole Kubernetes cluster (`kube::cluster`) is another.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use cairn_chaos::history::Nanos;
use cairn_chaos::record::FaultEvent;
use cairn_chaos::schedule::{Fault, FaultKind, Step};
use etcd_client::CompactionOptions;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::workload::watch::Progress;
use crate::workload::Shared;
use cairn_testkit::proxy::LinkMode;
use cairn_testkit::Cluster;

/// What the progress line shows: the index of the fault in force, plus one.
pub static CURRENT: AtomicUsize = AtomicUsize::new(0);

/// How a fault is undone.
pub enum Undo {
    Nothing,
    Restart(Vec<usize>),
    Resume(usize),
    Links,
    /// Links, then report whether this slot caught up by a snapshot install.
    LinksThenSnapshot(usize, usize),
}

/// What cairn logs when a follower installs the leader's snapshot.
const SNAPSHOT_INSTALLED: &str = "installed a raft snapshot from the leader";

pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub recorder: Shared,
    pub progress: Arc<Progress>,
}

/// What the nemesis plays against.
pub trait Target {
    type Fault: FaultKind;
    type Undo;
    /// Injects one fault: what was done, and how to undo it.
    async fn inject(&self, step: &Step<Self::Fault>) -> Result<(String, Self::Undo)>;
    /// Undoes it and waits for health; what went wrong, if anything, for the timeline.
    async fn heal(&self, undo: Self::Undo) -> String;
    fn now(&self) -> Nanos;
    fn push(&self, event: FaultEvent);
}

/// Plays `plan` until `until`: quiet, inject, hold, heal, record.
pub async fn play<T: Target>(target: &T, plan: Vec<Step<T::Fault>>, until: Instant) {
    for (number, step) in plan.into_iter().enumerate() {
        tokio::time::sleep_until((Instant::now() + step.quiet).min(until)).await;
        if Instant::now() + step.hold >= until {
            break;
        }
        let at = target.now();
        CURRENT.store(number + 1, Ordering::Relaxed);
        let (detail, undo) = match target.inject(&step).await {
            Ok((detail, undo)) => (detail, Some(undo)),
            Err(err) => (format!("not injected: {err:#}"), None),
        };
        let mut event = FaultEvent { at, healed: None, fault: step.fault.name().into(), detail };
        tokio::time::sleep(step.hold).await;
        if let Some(undo) = undo {
            event.detail.push_str(&target.heal(undo).await);
        }
        event.healed = Some(target.now());
        CURRENT.store(0, Ordering::Relaxed);
        target.push(event);
    }
}

impl Target for Nemesis {
    type Fault = Fault;
    type Undo = Undo;

    async fn inject(&self, step: &Step) -> Result<(String, Undo)> {
        self.inject_fault(step).await
    }

    async fn heal(&self, undo: Undo) -> String {
        let mut detail = String::new();
        let mut cluster = self.cluster.lock().await;
        let snapshot_check = match undo {
            Undo::LinksThenSnapshot(slot, before) => Some((slot, before)),
            _ => None,
        };
        let healed = match undo {
            Undo::Nothing => Ok(()),
            Undo::Restart(slots) => slots.into_iter().try_for_each(|slot| cluster.restart(slot)),
            Undo::Resume(slot) => {
                cluster.members[slot].resume();
                Ok(())
            }
            Undo::Links | Undo::LinksThenSnapshot(..) => {
                cluster.set_all_links(LinkMode::Pass);
                Ok(())
            }
        };
        if let Err(err) = healed.and(cluster.wait_healthy(Duration::from_secs(30)).await) {
            detail.push_str(&format!("; not healthy after healing: {err:#}"));
        }
        if let Some((slot, before)) = snapshot_check {
            let deadline = Instant::now() + Duration::from_secs(10);
            while cluster.members[slot].log_mentions(SNAPSHOT_INSTALLED) == before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let installed = cluster.members[slot].log_mentions(SNAPSHOT_INSTALLED) > before;
            detail.push_str(if installed { "; caught up by snapshot" } else { "; caught up from the log" });
        }
        detail
    }

    fn now(&self) -> Nanos {
        self.recorder.now()
    }

    fn push(&self, event: FaultEvent) {
        self.recorder.record().timeline.push(event);
    }
}

impl Nemesis {
    async fn inject_fault(&self, step: &Step) -> Result<(String, Undo)> {
        let mut cluster = self.cluster.lock().await;
        let size = cluster.members.len();
        let picked = (step.pick % size as u64) as usize;
        Ok(match step.fault {
            Fault::KillRandom => {
                cluster.members[picked].kill();
                (format!("killed {}", cluster.members[picked].spec.name), Undo::Restart(vec![picked]))
            }
            Fault::KillLeader => {
                let leader = cluster.leader().await.ok_or_else(|| anyhow!("no leader"))?;
                cluster.members[leader].kill();
                self.recorder.record().leader_kills.push(self.recorder.now());
                (format!("killed leader {}", cluster.members[leader].spec.name), Undo::Restart(vec![leader]))
            }
            Fault::KillAll => {
                cluster.members.iter_mut().for_each(|member| member.kill());
                ("killed every member".into(), Undo::Restart((0..size).collect()))
            }
            Fault::PauseRandom => {
                cluster.members[picked].pause();
                (format!("paused {}", cluster.members[picked].spec.name), Undo::Resume(picked))
            }
            Fault::PauseLeader => {
                let leader = cluster.leader().await.ok_or_else(|| anyhow!("no leader"))?;
                cluster.members[leader].pause();
                (format!("paused leader {}", cluster.members[leader].spec.name), Undo::Resume(leader))
            }
            Fault::PartitionLeader | Fault::PartitionOneWay | Fault::SnapshotCatchUp => {
                let leader = cluster.leader().await.ok_or_else(|| anyhow!("no leader"))?;
                // The snapshot fault cuts off a follower, the others the leader.
                let cut = if step.fault == Fault::SnapshotCatchUp {
                    (leader + 1 + picked % (size - 1)) % size
                } else {
                    leader
                };
                for other in (0..size).filter(|other| *other != cut) {
                    cluster.set_link(cut, other, LinkMode::Stall);
                    if step.fault != Fault::PartitionOneWay {
                        cluster.set_link(other, cut, LinkMode::Stall);
                    }
                }
                let undo = if step.fault == Fault::SnapshotCatchUp {
                    Undo::LinksThenSnapshot(cut, cluster.members[cut].log_mentions(SNAPSHOT_INSTALLED))
                } else {
                    Undo::Links
                };
                (format!("{} cut off", cluster.members[cut].spec.name), undo)
            }
            Fault::PartitionMajority => {
                let minority: Vec<usize> = (0..(size - 1) / 2).map(|i| (picked + i) % size).collect();
                for from in 0..size {
                    for to in 0..size {
                        if minority.contains(&from) != minority.contains(&to) {
                            cluster.set_link(from, to, LinkMode::Stall);
                        }
                    }
                }
                let names: Vec<&str> = minority.iter().map(|slot| cluster.members[*slot].spec.name.as_str()).collect();
                (format!("minority {} cut off", names.join(",")), Undo::Links)
            }
            Fault::PartitionRing => {
                if size < 5 {
                    return Err(anyhow!("a ring needs 5 members or more"));
                }
                for from in 0..size {
                    for to in 0..size {
                        let distance = (from + size - to) % size;
                        if distance > 1 && distance < size - 1 {
                            cluster.set_link(from, to, LinkMode::Stall);
                        }
                    }
                }
                ("ring: each member reaches only its neighbours".into(), Undo::Links)
            }
            Fault::Delay => {
                let delay = Duration::from_millis(50 + step.pick % 151);
                cluster.set_all_links(LinkMode::Delay(delay));
                (format!("every link delayed {} ms", delay.as_millis()), Undo::Links)
            }
            Fault::Drop => {
                cluster.set_all_links(LinkMode::Lossy(0.02));
                ("every link resets 2% of transfers".into(), Undo::Links)
            }
            Fault::ReplaceMember | Fault::LearnerPromote => {
                let detail = cluster.replace(picked, step.fault == Fault::LearnerPromote).await?;
                (detail, Undo::Nothing)
            }
            Fault::CompactDefrag => {
                let revision = self.progress.low_water_mark().saturating_sub(10);
                let mut client = cluster.any_client(None, cairn_testkit::cluster::ADMIN_TIMEOUT).await?;
                if revision > 1 {
                    client.compact(revision, Some(CompactionOptions::new().with_physical())).await?;
                }
                let mut member =
                    cairn_testkit::connect(&cluster.members[picked].spec.client_url, Duration::from_secs(5)).await?;
                member.defragment().await?;
                (format!("compacted at {revision}, defragmented {}", cluster.members[picked].spec.name), Undo::Nothing)
            }
        })
    }
}
