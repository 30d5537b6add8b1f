//! The fault model and the seeded schedule of faults. Pure: a seed and a list
//! of fault kinds give the same schedule every time.

use std::time::Duration;

/// A small deterministic generator (SplitMix64): one seed fixes every choice.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `low..=high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }

    /// A generator for one worker, independent of the others.
    pub fn fork(&mut self, stream: u64) -> Rng {
        Rng(self.next_u64() ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }
}

/// The name of a kind of fault, as flags and reports spell it.
pub trait FaultKind: Copy + Eq + std::fmt::Debug {
    fn name(self) -> &'static str;
}

/// A fault enum from one table: each kind's name, one yes-or-no property
/// (the method named after the enum), and what it does.
macro_rules! faults {
    ($enum:ident, $flag:ident { $($variant:ident = $name:literal, $value:literal: $doc:literal;)* }) => {
        /// One kind of fault the nemesis injects.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $enum {
            $(#[doc = $doc] $variant,)*
        }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            pub fn describe(self) -> &'static str {
                match self {
                    $($enum::$variant => $doc,)*
                }
            }

            pub fn $flag(self) -> bool {
                match self {
                    $($enum::$variant => $value,)*
                }
            }
        }

        impl FaultKind for $enum {
            fn name(self) -> &'static str {
                $enum::name(self)
            }
        }

        impl std::str::FromStr for $enum {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                $enum::ALL.iter().copied().find(|fault| fault.name() == name).ok_or_else(|| {
                    let known: Vec<&str> = $enum::ALL.iter().map(|fault| fault.name()).collect();
                    format!("unknown fault {name:?}; known: {}", known.join(", "))
                })
            }
        }
    };
}

faults!(Fault, needs_proxies {
    KillRandom = "kill", false: "SIGKILL of a random member, restarted after the hold";
    KillLeader = "kill-leader", false: "SIGKILL of the leader, restarted after the hold";
    KillAll = "kill-all", false: "SIGKILL of every member at once, all restarted";
    PauseRandom = "pause", false: "SIGSTOP of a random member for longer than the election timeout, then SIGCONT";
    PauseLeader = "pause-leader", false: "SIGSTOP of the leader, then SIGCONT";
    PartitionLeader = "partition-leader", true: "the leader cut off from every other member";
    PartitionMajority = "partition-majority", true: "a random minority cut off from the majority";
    PartitionOneWay = "partition-one-way", true: "connections the leader opens to the others stall; theirs to it still work";
    PartitionRing = "partition-ring", true: "each member reaches only its two neighbours (5 members or more)";
    Delay = "delay", true: "every peer link delayed by 50 to 200 ms";
    Drop = "drop", true: "every peer link resets 2% of its transfers";
    ReplaceMember = "replace-member", false: "a member removed, wiped, and added back as a fresh voter";
    LearnerPromote = "learner-promote", false: "a member removed, wiped, added back as a learner and promoted";
    SnapshotCatchUp = "snapshot-catch-up", true: "a follower cut off past --snapshot-count, so that it catches up by snapshot";
    CompactDefrag = "compact-defrag", false: "compaction behind the watchers, then defrag of a random member";
});

// The faults of the whole Kubernetes cluster; the flag says whether the
// workload holds its scale-downs and deletes meanwhile, so that the pods that
// go away are the node controller's doing alone.
faults!(KubeFault, quiets_the_workload {
    StoreKillLeader = "store-kill-leader", false: "SIGKILL of the store's Raft leader, restarted after the hold";
    StoreKillFollower = "store-kill-follower", false: "SIGKILL of a store follower, restarted after the hold";
    StorePauseLeader = "store-pause-leader", false: "SIGSTOP of the store's Raft leader, then SIGCONT";
    StorePauseFollower = "store-pause-follower", false: "SIGSTOP of a store follower, then SIGCONT";
    StorePartition = "store-partition", false: "the store's leader cut off from the other members";
    ApiServerKill = "apiserver-kill", false: "SIGKILL of an API server replica, restarted after the hold";
    ApiServerPause = "apiserver-pause", false: "SIGSTOP of an API server replica, then SIGCONT";
    ControllerManagerKillLeader = "cm-kill-leader", false: "SIGKILL of the leading controller-manager, restarted after the hold";
    ControllerManagerPauseLeader = "cm-pause-leader", false: "SIGSTOP of the leading controller-manager past its lease, then SIGCONT";
    SchedulerKillLeader = "scheduler-kill-leader", false: "SIGKILL of the leading scheduler, restarted after the hold";
    SchedulerPauseLeader = "scheduler-pause-leader", false: "SIGSTOP of the leading scheduler past its lease, then SIGCONT";
    NodeCut = "node-cut", true: "a hollow node cut off from the API servers until its pods are evicted, then healed";
});

/// One step of the schedule: wait `quiet`, inject `fault` for `hold`, heal.
/// `pick` chooses the member(s) or the split, so that it is seeded too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step<F = Fault> {
    pub quiet: Duration,
    pub fault: F,
    pub hold: Duration,
    pub pick: u64,
}

/// The store's schedule for a seed, in units of the election timeout.
pub fn plan(seed: u64, faults: &[Fault], election_timeout: Duration, steps: usize) -> Vec<Step> {
    let election = election_timeout.as_millis() as u64;
    plan_with(seed, faults, steps, (election, 3 * election), |fault, rng| match fault {
        // Longer than the election timeout, so that a pause costs leadership.
        Fault::PauseRandom | Fault::PauseLeader => rng.millis(2 * election, 4 * election),
        Fault::SnapshotCatchUp => rng.millis(8 * election, 12 * election),
        _ => rng.millis(2 * election, 6 * election),
    })
}

/// The schedule for a seed: faults in a seeded order, each one in turn so that
/// a long run covers every kind, with seeded quiet times (milliseconds, low
/// and high) and the hold that `hold` draws for each kind.
pub fn plan_with<F: Copy>(
    seed: u64,
    faults: &[F],
    steps: usize,
    quiet: (u64, u64),
    hold: impl Fn(F, &mut Rng) -> Duration,
) -> Vec<Step<F>> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<F> = faults.to_vec();
    let mut plan = Vec::with_capacity(steps);
    while plan.len() < steps && !order.is_empty() {
        // A fresh seeded shuffle per round: every kind once per round.
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for &fault in &order {
            let hold = hold(fault, &mut rng);
            plan.push(Step { quiet: rng.millis(quiet.0, quiet.1), fault, hold, pick: rng.next_u64() });
            if plan.len() == steps {
                break;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_schedule() {
        let election = Duration::from_secs(1);
        let a = plan(7, Fault::ALL, election, 40);
        assert_eq!(a, plan(7, Fault::ALL, election, 40));
        assert_ne!(a, plan(8, Fault::ALL, election, 40));
    }

    #[test]
    fn every_kind_comes_once_per_round() {
        let schedule = plan(1, Fault::ALL, Duration::from_secs(1), Fault::ALL.len());
        let mut kinds: Vec<Fault> = schedule.iter().map(|step| step.fault).collect();
        kinds.sort_by_key(|fault| fault.name());
        kinds.dedup();
        assert_eq!(kinds.len(), Fault::ALL.len());
    }

    #[test]
    fn names_round_trip() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(*fault));
        }
        for fault in KubeFault::ALL {
            assert_eq!(fault.name().parse::<KubeFault>(), Ok(*fault));
        }
        assert!("meteor".parse::<Fault>().is_err());
        assert!("meteor".parse::<KubeFault>().is_err());
    }
}
