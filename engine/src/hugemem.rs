//! Read-only byte buffers on 2 MiB pages: where the quantized weights live.
//!
//! A decode step reads every weight once, 85 MB for SmolLM2-135M in Q4_1, and
//! on 4 KiB pages that is a page walk every 4 KiB: the TLB holds a few
//! megabytes' worth of small pages, and the kernels' prefetches stall on the
//! walks. Linux backs a region with 2 MiB pages when asked
//! (`madvise(MADV_HUGEPAGE)`, the default `transparent_hugepage` setting being
//! `madvise`), but only for whole, aligned 2 MiB ranges, and a layer's
//! matrices are 0.2-1.1 MB each. So matrices are packed one after another
//! into shared chunks of at least 32 MiB, aligned to 2 MiB and advised before
//! they are first written. On a 2-core Sapphire Rapids-class VM, decode of
//! SmolLM2-135M ran 5-13% faster for one sequence, 2-11% for three and 0-7%
//! for 24, side by side with the weights on small pages.
//!
//! A chunk lives as long as any buffer in it (an `Arc`). A buffer dropped
//! gives its range back to its chunk, and new buffers take the first free
//! range that fits: loading a model packs each projection on its own and then
//! the fused ones (query-key-value, gate-up) from them, and the parts' space
//! goes to the next layer's parts instead of staying taken.

use std::alloc::Layout;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// Huge page size and chunk alignment.
const HUGE_PAGE: usize = 2 << 20;
/// Smallest chunk: sixteen huge pages.
const MIN_CHUNK: usize = 16 * HUGE_PAGE;
/// Alignment of each buffer in a chunk (a cache line; the kernels' records).
const ALIGN: usize = 64;

/// One aligned allocation that buffers are carved from.
struct Chunk {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Ranges no buffer holds, in order, none adjacent to another.
    free: Mutex<Vec<Range<usize>>>,
}

// SAFETY: a chunk is plain memory; each buffer's bytes are written once, before
// the buffer is shared, and only read afterwards.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// A chunk of at least `bytes`, advised onto huge pages where the OS
    /// takes the advice.
    fn new(bytes: usize) -> Self {
        let size = bytes.max(MIN_CHUNK).next_multiple_of(HUGE_PAGE);
        let layout = Layout::from_size_align(size, HUGE_PAGE).expect("a chunk's size fits memory");
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        // SAFETY: the range is this allocation, whole and aligned. Advice only
        // changes how the kernel backs the pages; a refusal (an older kernel,
        // huge pages off) leaves small pages, which still work.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_HUGEPAGE);
        }
        Self {
            ptr,
            layout,
            free: Mutex::new(std::iter::once(0..size).collect()),
        }
    }

    /// Takes the first free range of `len` bytes (rounded up to [`ALIGN`]).
    fn take(&self, len: usize) -> Option<usize> {
        let len = len.max(1).next_multiple_of(ALIGN);
        let mut free = lock(&self.free);
        let i = free.iter().position(|r| r.len() >= len)?;
        let start = free[i].start;
        free[i].start += len;
        if free[i].is_empty() {
            free.remove(i);
        }
        Some(start)
    }

    /// Gives `start..start + len` back (as [`Chunk::take`] rounded it).
    fn give(&self, start: usize, len: usize) {
        let end = start + len.max(1).next_multiple_of(ALIGN);
        let mut free = lock(&self.free);
        let i = free.partition_point(|r| r.start < start);
        free.insert(i, start..end);
        // Merge with the free neighbours, so that a larger buffer fits later.
        if i + 1 < free.len() && free[i].end == free[i + 1].start {
            free[i].end = free.remove(i + 1).end;
        }
        if i > 0 && free[i - 1].end == free[i].start {
            free[i - 1].end = free.remove(i).end;
        }
    }
}

/// Locks `m`, taking the data of a lock poisoned by a panic elsewhere: a free
/// list is consistent between the statements that change it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: allocated in `Chunk::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Every chunk made, while any buffer holds it.
static CHUNKS: Mutex<Vec<Weak<Chunk>>> = Mutex::new(Vec::new());

/// Immutable bytes inside a shared huge-page chunk.
pub struct HugeBytes {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl HugeBytes {
    /// `len` bytes, zeroed and then written by `fill`: a large buffer is made
    /// in place, without a second copy of it in memory.
    pub fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let (chunk, start) = {
            let mut chunks = lock(&CHUNKS);
            chunks.retain(|c| c.strong_count() > 0);
            let found = chunks
                .iter()
                .filter_map(Weak::upgrade)
                .find_map(|c| c.take(len).map(|start| (c, start)));
            found.unwrap_or_else(|| {
                let chunk = Arc::new(Chunk::new(len.max(1).next_multiple_of(ALIGN)));
                chunks.push(Arc::downgrade(&chunk));
                let start = chunk.take(len).expect("a new chunk holds the buffer");
                (chunk, start)
            })
        };
        // SAFETY: `start..start + len` lies inside the chunk and no other
        // buffer holds any of it; nothing else reads or writes it until this
        // returns.
        let buf = unsafe { std::slice::from_raw_parts_mut(chunk.ptr.as_ptr().add(start), len) };
        buf.fill(0);
        fill(buf);
        Self { chunk, start, len }
    }
}

impl Drop for HugeBytes {
    fn drop(&mut self) {
        self.chunk.give(self.start, self.len);
    }
}

impl std::ops::Deref for HugeBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the range was written in `build` and lives as long as
        // `self.chunk`.
        unsafe { std::slice::from_raw_parts(self.chunk.ptr.as_ptr().add(self.start), self.len) }
    }
}

impl std::fmt::Debug for HugeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeBytes({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_keep_their_bytes_and_alignment_across_chunks() {
        let a: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let big = vec![7u8; MIN_CHUNK + 3];
        let bufs: Vec<HugeBytes> = [&a[..], &big, &a[..10], &[]]
            .iter()
            .map(|b| HugeBytes::build(b.len(), |buf| buf.copy_from_slice(b)))
            .collect();
        assert_eq!(&bufs[0][..], &a[..]);
        assert_eq!(&bufs[1][..], &big[..]);
        assert_eq!(&bufs[2][..], &a[..10]);
        assert!(bufs[3].is_empty());
        for b in &bufs {
            assert_eq!(b.as_ptr() as usize % ALIGN, 0, "{b:?}");
        }
    }

    #[test]
    fn a_dropped_buffers_range_is_taken_again() {
        let chunk = Chunk::new(MIN_CHUNK);
        let a = chunk.take(100).unwrap();
        let b = chunk.take(5000).unwrap();
        let c = chunk.take(64).unwrap();
        assert_eq!((a, b, c), (0, 128, 128 + 5056));
        chunk.give(b, 5000);
        // The hole takes what fits, and the rest goes after `c`.
        assert_eq!(chunk.take(6000), Some(c + 64));
        assert_eq!(chunk.take(4000), Some(b));
        chunk.give(a, 100);
        chunk.give(b, 4000);
        // Merged with its neighbours, the freed space holds a larger buffer.
        assert_eq!(chunk.take(5000), Some(0));
        assert_eq!(chunk.take(MIN_CHUNK), None);
    }
}
