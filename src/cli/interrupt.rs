//! Ctrl-C. From the moment a request that may start a job is sent, and while a job is
//! followed, Ctrl-C detaches: the CLI says how to re-attach and exits 130, the job goes
//! on. At any other time it ends the CLI at once with 130, as the default would. The
//! handler is installed when the CLI starts, so a Ctrl-C that lands between the
//! gateway's answer and the job's first event still detaches with the re-attach line,
//! never kills the CLI silently.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

static DETACHABLE: AtomicBool = AtomicBool::new(false);
static PRESSED: AtomicBool = AtomicBool::new(false);

fn notify() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Installs the handler (call inside the runtime, before any request).
pub fn install() {
    let Ok(mut sig) = signal(SignalKind::interrupt()) else {
        return; // the default stays: Ctrl-C ends the CLI
    };
    tokio::spawn(async move {
        while sig.recv().await.is_some() {
            if !DETACHABLE.load(Ordering::SeqCst) {
                std::process::exit(i32::from(crate::exit::DETACHED));
            }
            PRESSED.store(true, Ordering::SeqCst);
            notify().notify_waiters();
        }
    });
}

/// From now on Ctrl-C detaches (a request that may start a job is about to be sent, or a
/// job is about to be followed).
pub fn detachable() {
    DETACHABLE.store(true, Ordering::SeqCst);
}

/// Resolves once Ctrl-C has been pressed since [`detachable`] (at once if it already was).
pub async fn pressed() {
    detachable();
    loop {
        let woken = notify().notified();
        if PRESSED.load(Ordering::SeqCst) {
            return;
        }
        woken.await;
    }
}
