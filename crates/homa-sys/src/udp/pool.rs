//! A bounded free list of receive buffers: the buffers a [`RecvBatch`]
//! hands over (see [`RecvBatch::take_shared`]) come back here when the
//! last `Bytes` referencing them drops, and the batch takes its fresh
//! buffers from here before it asks the allocator. At most `max` buffers
//! wait in the list; one returned beyond that is freed, so an idle
//! socket holds at most `max * stride` bytes here.
//!
//! [`RecvBatch`]: super::RecvBatch
//! [`RecvBatch::take_shared`]: super::RecvBatch::take_shared

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most idle buffers a pool keeps, whatever it is asked for (256 MiB of
/// 64 KiB buffers).
pub const MAX_IDLE: usize = 4096;

/// Counters of a [`BufPool`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Fresh buffers taken from the list (no allocation).
    pub reused: u64,
    /// Fresh buffers the allocator had to provide (the list was empty).
    pub allocated: u64,
    /// Buffers returned into the list.
    pub returned: u64,
    /// Buffers returned while the list was full, freed instead. (Buffers
    /// that [`RecvBatch::take_shared`](super::RecvBatch::take_shared)
    /// trimmed never come back here: their `Bytes` frees them.)
    pub freed: u64,
    /// Buffers waiting in the list now.
    pub idle: usize,
}

struct Shared {
    /// The idle buffers; its capacity is `max` from the start, so
    /// returning a buffer never allocates.
    free: Mutex<Vec<Vec<u8>>>,
    max: usize,
    stride: usize,
    reused: AtomicU64,
    allocated: AtomicU64,
    returned: AtomicU64,
    freed: AtomicU64,
}

/// A bounded, thread-safe free list of `stride`-byte buffers (cheap to
/// clone: clones share the list). A buffer may be returned from any
/// thread: the application drops received messages on its own threads.
#[derive(Clone)]
pub struct BufPool(Arc<Shared>);

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("max", &self.0.max)
            .field("stride", &self.0.stride)
            .field("stats", &self.stats())
            .finish()
    }
}

impl BufPool {
    /// A pool of `stride`-byte buffers keeping at most `max` idle ones
    /// (0: every returned buffer is freed), `max` capped at [`MAX_IDLE`]
    /// (the list's capacity is reserved up front).
    pub fn new(stride: usize, max: usize) -> BufPool {
        let max = max.min(MAX_IDLE);
        BufPool(Arc::new(Shared {
            free: Mutex::new(Vec::with_capacity(max)),
            max,
            stride,
            reused: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            freed: AtomicU64::new(0),
        }))
    }

    /// Bytes of capacity of each buffer.
    #[inline]
    pub fn stride(&self) -> usize {
        self.0.stride
    }

    /// Most idle buffers kept.
    #[inline]
    pub fn max(&self) -> usize {
        self.0.max
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        let s = &self.0;
        PoolStats {
            reused: s.reused.load(Ordering::Relaxed),
            allocated: s.allocated.load(Ordering::Relaxed),
            returned: s.returned.load(Ordering::Relaxed),
            freed: s.freed.load(Ordering::Relaxed),
            idle: self.lock().len(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while holding the lock cannot leave the list broken (a
        // push or a pop): keep using it.
        self.0.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer of `stride` bytes of capacity: an idle one if any,
    /// else a new allocation.
    pub fn get(&self) -> Vec<u8> {
        let s = &self.0;
        if s.max > 0 {
            if let Some(buf) = self.lock().pop() {
                s.reused.fetch_add(1, Ordering::Relaxed);
                return buf;
            }
        }
        s.allocated.fetch_add(1, Ordering::Relaxed);
        Vec::with_capacity(s.stride)
    }

    /// Gives a buffer back: kept (emptied) if it still has `stride` bytes
    /// of capacity and fewer than `max` are idle, else freed.
    pub fn put(&self, mut buf: Vec<u8>) {
        let s = &self.0;
        if buf.capacity() == s.stride && s.max > 0 {
            buf.clear();
            let mut free = self.lock();
            if free.len() < s.max {
                free.push(buf);
                drop(free);
                s.returned.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        s.freed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A handed-over buffer that returns to its pool when dropped (the owner
/// of a `Bytes` made by `Bytes::from_owner`).
pub(super) struct Pooled {
    pub(super) buf: Vec<u8>,
    pub(super) pool: BufPool,
}

impl AsRef<[u8]> for Pooled {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn get_and_put__reuse_up_to_max_and_free_the_rest() {
        let pool = BufPool::new(4096, 2);
        let bufs: Vec<Vec<u8>> = (0..3).map(|_| pool.get()).collect();
        assert!(bufs.iter().all(|b| b.capacity() == 4096 && b.is_empty()));
        let ptrs: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        for mut b in bufs {
            b.extend_from_slice(b"stale");
            pool.put(b);
        }
        let s = pool.stats();
        assert_eq!((s.allocated, s.returned, s.freed, s.idle), (3, 2, 1, 2));
        let again = pool.get();
        assert!(again.is_empty(), "returned buffers are emptied");
        assert!(ptrs.contains(&again.as_ptr()), "an idle buffer is reused");
        assert_eq!(pool.stats().reused, 1);
    }

    #[test]
    fn new__a_huge_max_is_capped_not_reserved() {
        // Reserving usize::MAX list entries would abort the process.
        let pool = BufPool::new(64, usize::MAX);
        assert_eq!(pool.max(), MAX_IDLE);
    }

    #[test]
    fn put__frees_a_buffer_of_another_capacity_and_a_zero_max_keeps_nothing() {
        let pool = BufPool::new(4096, 4);
        let mut trimmed = pool.get();
        trimmed.extend_from_slice(&[1; 100]);
        trimmed.shrink_to_fit();
        pool.put(trimmed);
        pool.put(Vec::with_capacity(8192));
        assert_eq!((pool.stats().freed, pool.stats().idle), (2, 0));
        let none = BufPool::new(4096, 0);
        none.put(none.get());
        none.put(none.get());
        let s = none.stats();
        assert_eq!((s.allocated, s.reused, s.freed, s.idle), (2, 0, 2, 0));
    }

    #[test]
    fn pooled__returns_its_buffer_when_the_last_bytes_drops() {
        let pool = BufPool::new(4096, 4);
        let mut buf = pool.get();
        buf.extend_from_slice(&[9; 3000]);
        let at = buf.as_ptr();
        let bytes = bytes::Bytes::from_owner(Pooled {
            buf,
            pool: pool.clone(),
        });
        let piece = bytes.slice(100..200);
        drop(bytes);
        assert_eq!(pool.stats().idle, 0, "a slice still holds it");
        assert_eq!(&piece[..], &[9; 100][..]);
        let other = std::thread::spawn(move || drop(piece));
        other.join().unwrap();
        assert_eq!(pool.stats().idle, 1, "returned from another thread");
        let reused = pool.get();
        assert_eq!(reused.as_ptr(), at);
    }
}
