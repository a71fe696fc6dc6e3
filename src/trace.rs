//! Step timing for profiling: with `PODBOX_TRACE=1`, `step("name")` prints to stderr how long
//! the process spent since the previous step (or since the first call). Off, it costs one
//! load of a cached flag, so the calls can stay in the hot paths.

use std::sync::OnceLock;
use std::sync::Mutex;
use std::time::Instant;

/// The time of the previous step, when tracing is on.
fn state() -> Option<&'static Mutex<Instant>> {
    static ON: OnceLock<Option<Mutex<Instant>>> = OnceLock::new();
    ON.get_or_init(|| std::env::var_os("PODBOX_TRACE").filter(|v| v == "1").map(|_| Mutex::new(Instant::now()))).as_ref()
}

/// Report the time since the previous step under `name` (nothing unless PODBOX_TRACE=1).
pub fn step(name: &str) {
    if let Some(m) = state() {
        let mut last = m.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        eprintln!("podbox-trace {name} {:.3} ms", (now - *last).as_secs_f64() * 1e3);
        *last = now;
    }
}
