//! Futex waits on a word of memory, private or shared between processes
//! (`MAP_SHARED`): a thread sleeps until the word changes, another (in any
//! process that maps the word) wakes it. The host table's waiter sleeps
//! on the table's generation word this way (`homa-transport`'s `host`
//! module), so a process held back by the others costs nothing until
//! someone publishes a change.
//!
//! The futex is on the low 32 bits of a 64-bit atomic word (the kernel's
//! futex word is 32 bits): a change of the 64-bit value that leaves its low
//! half unchanged (2^32 changes in between) goes unseen, which a sleeper
//! with a timeout tolerates. Waits and wakes are *shared* futexes (keyed by
//! the physical page), so they work across processes on a `MAP_SHARED`
//! mapping and, a little more slowly, on private memory too.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use rustix::thread::futex;

/// The low 32 bits of `word`, as the kernel's futex word.
fn low_half(word: &AtomicU64) -> &AtomicU32 {
    let offset = if cfg!(target_endian = "little") { 0 } else { 1 };
    // SAFETY: an `AtomicU64` is 8 bytes, aligned to 8; its low half is the
    // 4-byte, 4-aligned half at `offset`, inside the same allocation and
    // living as long as `word`. Both types are interior-mutable, so a
    // shared reference to either half is sound to hold. This module only
    // hands the reference to the kernel (`futex`), which reads the 32 bits
    // atomically; no Rust code accesses the half as an `AtomicU32`, so
    // there is no mixed-size access from Rust.
    unsafe { &*(word as *const AtomicU64 as *const AtomicU32).add(offset) }
}

/// Sleeps while `word`'s low 32 bits equal `seen`'s, until woken by
/// [`wake_all`], a signal, or `timeout` (`None`: no limit). Returns at
/// once if they differ already. Spurious returns are possible: the caller
/// reads the word again.
pub fn wait_while(word: &AtomicU64, seen: u64, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match futex::wait(
        low_half(word),
        futex::Flags::empty(),
        seen as u32,
        ts.as_ref(),
    ) {
        Ok(()) => Ok(()),
        // The word changed before we slept; the time ran out; a signal.
        Err(e)
            if e == rustix::io::Errno::AGAIN
                || e == rustix::io::Errno::TIMEDOUT
                || e == rustix::io::Errno::INTR =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Wakes every thread sleeping in [`wait_while`] on `word` (in any process
/// that maps it). Returns how many woke.
pub fn wake_all(word: &AtomicU64) -> usize {
    futex::wake(low_half(word), futex::Flags::empty(), i32::MAX as u32).unwrap_or(0)
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn wait_while__returns_at_once_when_the_word_differs_and_after_the_timeout() {
        let w = AtomicU64::new(7);
        let t = std::time::Instant::now();
        wait_while(&w, 8, Some(Duration::from_secs(5))).unwrap();
        wait_while(&w, 7, Some(Duration::from_millis(1))).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        // Only the low half counts.
        w.store(7 + (1 << 32), Ordering::SeqCst);
        wait_while(&w, 7, Some(Duration::from_millis(1))).unwrap();
    }

    #[test]
    fn wake_all__wakes_a_sleeper_of_another_thread() {
        let w = Arc::new(AtomicU64::new(1));
        let w2 = w.clone();
        let sleeper = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            // One long sleep: only the wake-up (or the change, if it came
            // before the sleep) ends it early.
            wait_while(&w2, 1, Some(Duration::from_secs(20))).unwrap();
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        w.store(2, Ordering::SeqCst);
        let woke = wake_all(&w);
        let slept = sleeper.join().unwrap();
        assert!(
            slept < Duration::from_secs(10),
            "not woken: slept {slept:?}"
        );
        assert!(woke <= 1, "{woke}");
    }
}
