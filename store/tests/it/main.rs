//! One integration binary: real processes, the real etcdctl 3.5.1, the Rust
//! etcd client, and a real etcd 3.5.1 for differential tests.

mod cluster;
mod differential;
mod etcdctl_compat;
mod harness;
mod lease;
mod maintenance;
mod membership;
mod process;
mod python;
mod snapshot;
mod watch;
