//! The RSS and CPU of every process of the cluster, sampled from /proc.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// Linux's USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds so far and resident bytes of one process; None once it is gone.
pub fn read(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches(" kB").trim().parse().ok()?;
    Some((ticks as f64 / TICKS_PER_SECOND, kib * 1024))
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentUsage {
    pub processes: usize,
    pub max_rss_bytes: u64,
    /// CPU seconds used over the run divided by its wall seconds.
    pub average_cores: f64,
    /// (seconds since start, RSS bytes) for the charts.
    pub rss_series: Vec<(f64, u64)>,
}

struct Sampler {
    started: Instant,
    /// Component name → its processes.
    groups: BTreeMap<String, Vec<u32>>,
    first_cpu: BTreeMap<String, f64>,
    last_cpu: BTreeMap<String, f64>,
    usage: BTreeMap<String, ComponentUsage>,
}

/// Samples every few seconds until stopped; groups sum the processes of one
/// component (all kubelet processes count as "kubelets").
#[derive(Clone)]
pub struct Usage(Arc<Mutex<Sampler>>);

impl Usage {
    pub fn start(groups: BTreeMap<String, Vec<u32>>, every: Duration) -> Usage {
        let usage = Usage(Arc::new(Mutex::new(Sampler {
            started: Instant::now(),
            groups,
            first_cpu: BTreeMap::new(),
            last_cpu: BTreeMap::new(),
            usage: BTreeMap::new(),
        })));
        let sampler = usage.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if Arc::strong_count(&sampler.0) == 1 {
                    return;
                }
                sampler.sample();
            }
        });
        usage
    }

    fn sample(&self) {
        let mut sampler = self.0.lock();
        let at = sampler.started.elapsed().as_secs_f64();
        let groups = sampler.groups.clone();
        for (name, pids) in groups {
            let readings: Vec<(f64, u64)> = pids.iter().filter_map(|pid| read(*pid)).collect();
            let cpu: f64 = readings.iter().map(|r| r.0).sum();
            let rss: u64 = readings.iter().map(|r| r.1).sum();
            sampler.first_cpu.entry(name.clone()).or_insert(cpu);
            sampler.last_cpu.insert(name.clone(), cpu);
            let entry = sampler.usage.entry(name).or_default();
            entry.processes = readings.len().max(entry.processes);
            entry.max_rss_bytes = entry.max_rss_bytes.max(rss);
            entry.rss_series.push((at, rss));
        }
    }

    /// Each component's usage so far.
    pub fn report(&self) -> BTreeMap<String, ComponentUsage> {
        self.sample();
        let sampler = self.0.lock();
        let wall = sampler.started.elapsed().as_secs_f64().max(1e-9);
        let mut usage = sampler.usage.clone();
        for (name, entry) in usage.iter_mut() {
            let used = sampler.last_cpu.get(name).copied().unwrap_or(0.0)
                - sampler.first_cpu.get(name).copied().unwrap_or(0.0);
            entry.average_cores = used / wall;
        }
        usage
    }

    /// The current RSS of one component.
    pub fn rss_now(&self, name: &str) -> u64 {
        let sampler = self.0.lock();
        sampler.groups.get(name).map_or(0, |pids| pids.iter().filter_map(|pid| read(*pid)).map(|r| r.1).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_resident_memory() {
        let (cpu, rss) = read(std::process::id()).expect("our own /proc entry");
        assert!(cpu >= 0.0);
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(read(u32::MAX).is_none());
    }
}
