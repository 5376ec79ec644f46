//! [`AckSet`]: the ack floor plus a bitmap of acknowledged offsets above it, whose memory
//! follows the unacked window; and the integer-keyed hash maps of the ack state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hasher for integer keys (offsets, consumer ids): the Fx multiply-rotate mix. The keys
/// are not attacker-chosen strings, so SipHash's flood resistance buys nothing here.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A hash map keyed by integers.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
/// A hash set of integers.
pub type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// The ack floor plus a bitmap of acknowledged offsets above it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckSet {
    pub(super) floor: u64,
    /// Offset of bit 0 of `words[0]`: a multiple of 64, at most `floor`.
    pub(super) base: u64,
    pub(super) words: VecDeque<u64>,
    /// Set bits at or above the floor.
    pub(super) above: u64,
}

impl AckSet {
    /// An empty set whose floor is `floor`.
    pub fn new(floor: u64) -> Self {
        AckSet {
            floor,
            base: floor & !63,
            words: VecDeque::new(),
            above: 0,
        }
    }

    /// Every offset below it is acknowledged.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Acknowledged offsets above the floor.
    pub fn above(&self) -> u64 {
        self.above
    }

    /// Words of bitmap held (memory is 8 bytes each).
    pub fn words(&self) -> usize {
        self.words.len()
    }

    /// True when `o` is acknowledged.
    pub fn contains(&self, o: u64) -> bool {
        if o < self.floor {
            return true;
        }
        let i = ((o - self.base) / 64) as usize;
        i < self.words.len() && self.words[i] & (1 << ((o - self.base) % 64)) != 0
    }

    /// Acknowledges `o`; false when it already was.
    pub fn insert(&mut self, o: u64) -> bool {
        if self.contains(o) {
            return false;
        }
        let i = ((o - self.base) / 64) as usize;
        if i >= self.words.len() {
            self.words.resize(i + 1, 0);
        }
        self.words[i] |= 1 << ((o - self.base) % 64);
        self.above += 1;
        if o == self.floor {
            self.advance();
        }
        true
    }

    fn advance(&mut self) {
        loop {
            let rel = self.floor - self.base;
            let i = (rel / 64) as usize;
            if i >= self.words.len() {
                break;
            }
            let sh = rel % 64;
            let ones = ((!(self.words[i] >> sh)).trailing_zeros() as u64).min(64 - sh);
            self.floor += ones;
            self.above -= ones;
            if ones < 64 - sh {
                break;
            }
        }
        self.trim();
    }

    pub(super) fn trim(&mut self) {
        while !self.words.is_empty() && self.base + 64 <= self.floor {
            self.words.pop_front();
            self.base += 64;
        }
        if self.words.is_empty() {
            self.base = self.floor & !63;
        }
    }

    pub(super) fn recount(&mut self) {
        let mut n = 0u64;
        for (i, w) in self.words.iter().enumerate() {
            let lo = self.base + i as u64 * 64;
            let mut w = *w;
            if lo < self.floor {
                let sh = self.floor - lo;
                w = if sh >= 64 { 0 } else { w & (!0u64 << sh) };
            }
            n += w.count_ones() as u64;
        }
        self.above = n;
    }

    /// Acknowledges everything below `f`.
    pub fn raise_floor(&mut self, f: u64) {
        if f <= self.floor {
            return;
        }
        self.floor = f;
        self.trim();
        self.recount();
        self.advance();
    }

    /// Forgets everything at or above `end` (the log lost its tail); the floor is clamped to it.
    pub fn clamp(&mut self, end: u64) {
        if self.floor >= end {
            *self = AckSet::new(end);
            return;
        }
        let keep = (end - self.base).div_ceil(64) as usize;
        self.words.truncate(keep);
        if self.words.len() == keep {
            // The last word straddles `end`: clear its bits at or above it.
            let top = end - self.base - (keep as u64 - 1) * 64;
            if top < 64 {
                let last = self.words.back_mut().expect("keep >= 1 words");
                *last &= (1u64 << top) - 1;
            }
        }
        self.recount();
    }

    /// Acked offsets at or above the floor, ascending (for tests and inspection).
    pub fn acked_above(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, w) in self.words.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                let b = w.trailing_zeros() as u64;
                let o = self.base + i as u64 * 64 + b;
                if o >= self.floor {
                    out.push(o);
                }
                w &= w - 1;
            }
        }
        out
    }
}
