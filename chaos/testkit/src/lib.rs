//! The one way anything starts Cairn or etcd members. The store's
//! integration tests, the chaos harness, the benchmarks and the API server's
//! tests all start members through it, so that any of them can run against
//! Cairn or against a real etcd.
//!
//! - [`binaries`]: where cairn, etcd, etcdctl and etcdutl are;
//! - [`net`]: loopback addresses and ports that never collide;
//! - [`cluster`]: members as real processes: start, kill, pause, restart, replace;
//! - [`pki`]: a CA and certificates for TLS tests, and clusters with TLS on every link;
//! - [`proxy`]: one TCP proxy per directed peer link, to partition members;
//! - [`etcdctl`]: the real etcdctl, bounded in time;
//! - [`http`]: a plain HTTP/1.1 client for the JSON gateway, streams read line by line;
//! - [`differential`]: one script against etcd and against Cairn, compared;
//! - [`mutate`]: deterministic byte mutations for the fuzz checks in CI;
//! - [`kube`]: `cairn-kube apiserver` as a process, with a kubeconfig and kubectl;
//! - [`upstream`]: the upstream kube-apiserver, controller-manager and scheduler
//!   on any store, with hollow nodes.

pub mod binaries;
pub mod cluster;
pub mod differential;
pub mod etcdctl;
pub mod http;
pub mod kube;
pub mod mutate;
pub mod net;
pub mod pki;
pub mod proxy;
pub mod upstream;

pub use binaries::{cairn as cairn_binary, etcd_tool};
pub use cluster::{client, connect, plan, plan_https, Cluster, Flavor, Member, MemberSpec, Options};
pub use differential::{assert_same_as_etcd, assert_same_as_etcd36, err_of};
pub use etcdctl::{etcdctl, etcdctl36, etcdctl_ok, etcdctl_stdin};
pub use net::free_url;
