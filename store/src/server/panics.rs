//! A panic anywhere in a serving member is a fault, as an unrecovered panic in
//! any goroutine ends etcd. Tokio catches a task's panic and goes on without
//! the task: the lessor, the proposer's batch loop or the ReadIndex loop gone,
//! the member would stay up and never expire a lease, or never answer a write.

use std::panic::PanicHookInfo;
use std::sync::{Once, OnceLock};

use tokio::sync::Notify;

static FIRST: OnceLock<String> = OnceLock::new();
static RAISED: Notify = Notify::const_new();

/// Records every later panic, after the hook before it has printed it.
pub fn watch() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let _ = FIRST.set(describe(info));
            RAISED.notify_one();
        }));
    });
}

/// The first panic since [`watch`], once there has been one.
pub async fn first() -> String {
    loop {
        if let Some(panic) = FIRST.get() {
            return panic.clone();
        }
        // A notification before this wait is kept as a permit.
        RAISED.notified().await;
    }
}

fn describe(info: &PanicHookInfo) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    match info.location() {
        Some(location) => format!("panicked at {location}: {message}"),
        None => format!("panicked: {message}"),
    }
}
