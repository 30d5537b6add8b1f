//! Loopback addresses and ports. Each process gets its own loopback address
//! from its pid, and hands out ports in order, so that tests, benchmarks and
//! chaos runs that run at once never collide. No address leaves 127.0.0.0/8.

use std::sync::atomic::{AtomicU16, Ordering};

/// This process's loopback address: 127.a.b.c from the pid.
pub fn loopback_ip() -> String {
    let pid = std::process::id();
    format!("127.{}.{}.{}", (pid >> 16) & 0xff, (pid >> 8) & 0xff, (pid & 0xff).max(1))
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);

/// The next port of this process's range.
pub fn next_port() -> u16 {
    NEXT_PORT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh `http://ip:port` on this process's loopback address.
pub fn free_url() -> String {
    format!("http://{}:{}", loopback_ip(), next_port())
}
