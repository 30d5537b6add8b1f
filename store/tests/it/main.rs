//! One integration binary: real processes (started by `cairn-testkit`), the
//! real etcdctl 3.5.1, the Rust etcd client, and a real etcd 3.5.1 for
//! differential tests.

mod auth;
mod client_suites;
mod cluster;
mod concurrency;
mod corruption;
mod differential;
mod etcdctl_compat;
mod gateway;
mod health;
mod lease;
mod maintenance;
mod membership;
mod process;
mod python;
mod raw_requests;
mod snapshot;
mod tls;
mod watch;
