//! A growable byte buffer whose memory is aligned for O_DIRECT writes.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Alignment (and block size) of direct I/O: 4096 covers 512-byte and 4 KiB sector devices.
pub const DIRECT_ALIGN: usize = crate::format::scan::PADDING_BLOCK as usize;

/// Rounds `n` up to a multiple of [`DIRECT_ALIGN`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
}

/// Rounds `n` down to a multiple of [`DIRECT_ALIGN`].
pub fn round_down(n: u64) -> u64 {
    n / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64
}

/// Bytes in memory aligned to [`DIRECT_ALIGN`]; the capacity is always a multiple of it, so a
/// view padded to whole blocks is always in bounds.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read.
unsafe impl Sync for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} of {} bytes)", self.len, self.cap)
    }
}

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        let cap = round_up(cap.max(1));
        let layout = Layout::from_size_align(cap, DIRECT_ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap, len: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for cap >= len initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes held, zero-padded to a multiple of [`DIRECT_ALIGN`] (the padding is zeroed
    /// here, so reuse after `clear` never leaks old bytes into the file).
    pub fn padded(&mut self) -> &[u8] {
        let n = round_up(self.len);
        // SAFETY: len <= n <= cap; every byte of the allocation is initialised (zeroed at
        // allocation), and the padding is zeroed before it is exposed.
        unsafe {
            std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n - self.len);
            std::slice::from_raw_parts(self.ptr.as_ptr(), n)
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Appends bytes, growing the allocation when needed.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let need = self.len + bytes.len();
        if need > self.cap {
            let mut bigger = AlignedBuf::with_capacity(need.max(self.cap * 2));
            bigger.extend_from_slice(self.as_slice());
            *self = bigger;
        }
        // SAFETY: need <= cap; the regions do not overlap (bytes is not inside our allocation
        // past len, which nobody else can reference).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len = need;
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, DIRECT_ALIGN).expect("valid layout");
        // SAFETY: allocated with this layout in with_capacity.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_aligned_and_pads_with_zeros() {
        let mut b = AlignedBuf::with_capacity(10);
        assert_eq!(b.ptr.as_ptr() as usize % DIRECT_ALIGN, 0);
        b.extend_from_slice(&[7u8; 5000]);
        assert_eq!(b.ptr.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(b.len(), 5000);
        assert_eq!(b.padded().len(), 8192);
        assert!(b.padded()[5000..].iter().all(|&x| x == 0));
        b.extend_from_slice(&[9u8; 100]);
        b.clear();
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(b.padded().len(), 4096);
        assert!(b.padded()[3..].iter().all(|&x| x == 0));
    }
}
