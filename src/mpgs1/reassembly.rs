//! Reassembly of fragmented messages (PROTOCOL.md §8 "Our receiver"; §15
//! rules 10, 13 and 14; §16 bugs 2, 3 and 12).
//!
//! A fragment is an APP_FRAGMENT message: its `msgseq` and data of a 6-byte
//! [`FragmentHeader`] followed by a chunk. A reassembly is keyed by
//! `(frag_id, count, m₁)`, where `m₁` is the fragment's msgseq moved back
//! `index − 1` steps on the ring; its fragments occupy the msgseq range
//! `m₁ .. m₁ + count`.
//!
//! Memory: nothing is allocated per fragment. A reassembly holds a
//! received-bitmap (`⌈count / 64⌉` words), one zeroed body buffer of
//! `(count − 1)·chunk` bytes allocated when the first non-final fragment
//! reveals the sender's chunk size, and the final chunk. The final chunk is
//! appended to the body (one exact reservation) when it arrives after the
//! body exists, or kept in its own small buffer and folded into the body when
//! the body is allocated later. The completed body is handed out as the
//! message itself, so a message costs three allocations (or two and one
//! reallocation) however many fragments it has.
//!
//! Bounds (rule 10): at most `max_reassemblies` at once, and at most
//! `max_bytes` of chunk buffers (body and final chunk, as allocated, including
//! the zeroed space of chunks still missing). The bitmaps are bookkeeping
//! outside that budget: at most 1 KiB per reassembly.
//!
//! Expiry (rule 13) is by injected time only: [`Reassembler::expire`] is
//! called on every timer poll; fragment arrival never expires anything, so
//! [`Reassembler::would_run_out_of_room`] and [`Reassembler::on_fragment`]
//! see the same state.
//!
//! Lifetime: a reassembly expires `max(1 + 0.5·count s, min_lifetime)` after
//! the last fragment that made progress, not after the first one. Acks are
//! per datagram, so a fragment we stored has been acknowledged and will not
//! come again: expiring a reassembly whose sender is still resending its
//! missing fragments would lose the message while the sender reports it
//! delivered. The connection sets `min_lifetime` to its connection timeout
//! plus the ack timeout, longer than any gap between the resends of a live
//! reliable sender.

use alloc::vec;
use alloc::vec::Vec;

use crate::mpgs1::seq;
use crate::mpgs1::wire::fragment::FragmentHeader;
use crate::time::{Duration, Instant};

/// Heap bytes of one reassembly besides its chunk buffers and bitmap, for
/// [`crate::MemoryBounds`].
pub(crate) const ENTRY_SIZE: usize = core::mem::size_of::<Entry>();

/// Fixed part of a reassembly's lifetime: 1 s.
const EXPIRY_BASE_MICROS: u64 = 1_000_000;
/// Lifetime added per fragment of the message: 0.5 s.
const EXPIRY_PER_FRAGMENT_MICROS: u64 = 500_000;
/// Modulus of the msgseq ring (values 1..=65535).
const RING: u32 = 65_535;
/// Fragments of one datagram that [`Reassembler::would_run_out_of_room`] can
/// simulate. A datagram holds at most 255 messages (§5); past this the answer
/// is a conservative "no room".
const SIM_CAP: usize = 256;

/// Per-connection bounds (§15 rule 10).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most fragments a message may claim (`count`).
    pub max_fragments: u16,
    /// Shortest lifetime of a reassembly without progress.
    pub min_lifetime: Duration,
    /// Most reassemblies in progress at once.
    pub max_reassemblies: usize,
    /// Most bytes of chunk buffers held at once.
    pub max_bytes: usize,
    /// Largest message delivered.
    pub max_message_size: usize,
}

/// Why a fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drop {
    /// Fails the §8 validation: header shorter than 6 bytes, `frag_id = 0`,
    /// `count` outside `2..=max_fragments`, `index` outside `1..=count`, an
    /// empty chunk, or msgseq 0.
    Invalid,
    /// Disagrees with an existing reassembly (rule 14): inside its msgseq
    /// range with another header, or a non-final chunk of another size.
    Inconsistent,
    /// The message would exceed `max_message_size` (or could never fit
    /// `max_bytes`).
    TooLarge,
    /// No reassembly slot or byte budget left for it now.
    NoRoom,
}

/// What [`Reassembler::on_fragment`] did with a fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored; the message is still incomplete.
    Pending,
    /// This index was already received; ignored.
    Duplicate,
    /// The last missing fragment: the whole message.
    Complete(Vec<u8>),
    /// Not stored.
    Dropped(Drop),
}

/// Identity of a reassembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Key {
    frag_id: u16,
    count: u16,
    /// msgseq of index 1.
    m1: u16,
}

impl Key {
    /// Whether `msgseq` lies in `m₁ .. m₁ + count` on the ring.
    fn contains(&self, msgseq: u16) -> bool {
        ring_offset(self.m1, msgseq) < u32::from(self.count)
    }
}

/// Steps forward from `from` to `to` on the 1..=65535 ring, in `0..65535`.
fn ring_offset(from: u16, to: u16) -> u32 {
    (u32::from(to) % RING + RING - u32::from(from) % RING) % RING
}

/// Words of the received-bitmap of a `count`-fragment message.
fn bitmap_words(count: u16) -> usize {
    usize::from(count).div_ceil(64)
}

/// What is known about the reassembly a fragment belongs to.
#[derive(Clone, Copy, Debug, Default)]
struct Known {
    exists: bool,
    /// Size of the non-final chunks, 0 while unknown.
    chunk: usize,
    /// Size of the final chunk, 0 while not received.
    tail: usize,
    /// Fragments received.
    have: u16,
    /// The fragment's index was already received.
    has_index: bool,
}

/// A fragment that passed every check, and its effect.
#[derive(Clone, Copy, Debug)]
struct Accept<'d> {
    key: Key,
    index: u16,
    chunk: &'d [u8],
    /// Starts a new reassembly.
    new: bool,
    /// Buffer bytes this fragment adds.
    add: usize,
    /// It is the last missing fragment.
    completes: bool,
    /// Buffer bytes of the whole reassembly once complete (exact only when
    /// `completes`).
    footprint: usize,
}

/// The state a fragment is judged against: the real one, or the real one
/// plus the simulated effect of earlier fragments of a datagram.
trait View {
    fn known(&self, key: Key, index: u16) -> Known;
    /// Whether `msgseq` lies in the range of a live reassembly.
    fn in_any_range(&self, msgseq: u16) -> bool;
    fn live(&self) -> usize;
    fn bytes(&self) -> usize;
}

/// The §8 receiver rules and the bounds, without changing anything.
/// `Ok(None)` is a duplicate.
/// `cap` is the most bytes the connection may hold now: `max_bytes`, or less
/// when the endpoint-wide budget is short.
fn decide<'d, V: View>(
    limits: &Limits,
    view: &V,
    msgseq: u16,
    data: &'d [u8],
    cap: usize,
) -> Result<Option<Accept<'d>>, Drop> {
    if msgseq == 0 {
        return Err(Drop::Invalid);
    }
    let (h, chunk) = FragmentHeader::parse(data).map_err(|_| Drop::Invalid)?;
    if !h.is_valid(usize::from(limits.max_fragments)) || chunk.is_empty() {
        return Err(Drop::Invalid);
    }
    let key = Key { frag_id: h.frag_id, count: h.count, m1: seq::back(msgseq, u32::from(h.index.saturating_sub(1))) };
    let known = view.known(key, h.index);
    if known.exists {
        if known.has_index {
            return Ok(None);
        }
    } else if view.in_any_range(msgseq) {
        return Err(Drop::Inconsistent);
    }
    let last = h.index == h.count;
    let len = chunk.len();
    if !last && known.chunk != 0 && len != known.chunk {
        return Err(Drop::Inconsistent);
    }
    let (chunk_size, tail) = if last { (known.chunk, len) } else { (len, known.tail) };
    // Smallest the message can be, given what is known: unknown chunks count
    // as one byte. Exact once both sizes are known.
    let non_final = usize::from(h.count - 1);
    let min_total =
        non_final.checked_mul(chunk_size.max(1)).and_then(|b| b.checked_add(tail.max(1))).ok_or(Drop::TooLarge)?;
    if min_total > limits.max_message_size || min_total > limits.max_bytes {
        return Err(Drop::TooLarge);
    }
    // `min_total` bounds every term below, so nothing overflows.
    let add = if last {
        len
    } else if known.chunk == 0 {
        non_final * len
    } else {
        0
    };
    if !known.exists && view.live() >= limits.max_reassemblies {
        return Err(Drop::NoRoom);
    }
    if view.bytes().checked_add(add).is_none_or(|b| b > cap) {
        return Err(Drop::NoRoom);
    }
    Ok(Some(Accept {
        key,
        index: h.index,
        chunk,
        new: !known.exists,
        add,
        completes: known.have.saturating_add(1) == h.count,
        footprint: min_total,
    }))
}

/// One message being reassembled.
#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Entry {
    key: Key,
    /// Lifetime without progress.
    life: Duration,
    deadline: Instant,
    /// Size of the non-final chunks, 0 until the first one arrives.
    chunk: usize,
    /// Size of the final chunk, 0 until it arrives.
    tail_len: usize,
    have: u16,
    /// Buffer bytes held: `body` and `tail`, as allocated.
    bytes: usize,
    /// Bit `i` is set when index `i + 1` was received.
    received: Vec<u64>,
    /// `(count − 1)·chunk` bytes once `chunk` is known, followed by the final
    /// chunk once that is received.
    body: Vec<u8>,
    /// The final chunk while `chunk` is still unknown.
    tail: Vec<u8>,
}

impl Entry {
    fn new(key: Key, now: Instant, min_lifetime: Duration) -> Entry {
        let life = Duration::from_micros(EXPIRY_BASE_MICROS + EXPIRY_PER_FRAGMENT_MICROS * u64::from(key.count))
            .max(min_lifetime);
        Entry {
            key,
            life,
            deadline: now + life,
            chunk: 0,
            tail_len: 0,
            have: 0,
            bytes: 0,
            received: vec![0; bitmap_words(key.count)],
            body: Vec::new(),
            tail: Vec::new(),
        }
    }

    fn has(&self, index: u16) -> bool {
        let i = usize::from(index.wrapping_sub(1));
        self.received.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    fn known(&self, index: u16) -> Known {
        Known { exists: true, chunk: self.chunk, tail: self.tail_len, have: self.have, has_index: self.has(index) }
    }

    /// Stores an accepted fragment. Every size was checked by [`decide`];
    /// the copies are still bounds-checked, so a slip cannot panic.
    fn store(&mut self, now: Instant, index: u16, chunk: &[u8], add: usize) {
        self.deadline = now + self.life;
        let non_final = usize::from(self.key.count.saturating_sub(1));
        if index == self.key.count {
            if self.chunk == 0 {
                self.tail = chunk.to_vec();
            } else {
                self.body.reserve_exact(chunk.len());
                self.body.extend_from_slice(chunk);
            }
            self.tail_len = chunk.len();
        } else {
            if self.chunk == 0 {
                let n = non_final.saturating_mul(chunk.len());
                let mut body = vec![0; n.saturating_add(self.tail.len())];
                if let Some(dst) = body.get_mut(n..)
                    && dst.len() == self.tail.len()
                {
                    dst.copy_from_slice(&self.tail);
                }
                self.body = body;
                self.tail = Vec::new();
                self.chunk = chunk.len();
            }
            let start = usize::from(index - 1).saturating_mul(self.chunk);
            let end = start.saturating_add(chunk.len());
            if let Some(dst) = self.body.get_mut(start..end) {
                dst.copy_from_slice(chunk);
            }
        }
        let i = usize::from(index - 1);
        if let Some(w) = self.received.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
        self.have = self.have.saturating_add(1);
        self.bytes += add;
    }
}

/// The reassemblies of one connection.
#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct Reassembler {
    limits: Limits,
    /// At most `max_reassemblies`; searched linearly.
    entries: Vec<Entry>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
}

impl View for Reassembler {
    fn known(&self, key: Key, index: u16) -> Known {
        self.find(key).map_or_else(Known::default, |e| e.known(index))
    }

    fn in_any_range(&self, msgseq: u16) -> bool {
        self.entries.iter().any(|e| e.key.contains(msgseq))
    }

    fn live(&self) -> usize {
        self.entries.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Reassembler {
    pub(crate) fn new(limits: Limits) -> Self {
        Reassembler { limits, entries: Vec::new(), bytes: 0 }
    }

    fn find(&self, key: Key) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The most bytes this connection may hold when `room` bytes of the
    /// endpoint-wide budget are free.
    fn cap(&self, room: usize) -> usize {
        self.limits.max_bytes.min(self.bytes.saturating_add(room))
    }

    /// Handles one APP_FRAGMENT message: its `msgseq` and its data (header
    /// and chunk). `now` starts the expiry clock of a new reassembly.
    /// `room` is what is free of the endpoint-wide budget.
    pub(crate) fn on_fragment(&mut self, now: Instant, msgseq: u16, data: &[u8], room: usize) -> Outcome {
        let acc = match decide(&self.limits, &*self, msgseq, data, self.cap(room)) {
            Err(reason) => return Outcome::Dropped(reason),
            Ok(None) => return Outcome::Duplicate,
            Ok(Some(acc)) => acc,
        };
        if acc.new {
            self.entries.push(Entry::new(acc.key, now, self.limits.min_lifetime));
        }
        let Some(pos) = self.entries.iter().position(|e| e.key == acc.key) else {
            // Unreachable: `decide` saw it, or it was just pushed.
            return Outcome::Dropped(Drop::Invalid);
        };
        let Some(entry) = self.entries.get_mut(pos) else {
            return Outcome::Dropped(Drop::Invalid);
        };
        entry.store(now, acc.index, acc.chunk, acc.add);
        self.bytes += acc.add;
        if !acc.completes {
            return Outcome::Pending;
        }
        let entry = self.entries.swap_remove(pos);
        debug_assert_eq!(entry.bytes, acc.footprint);
        debug_assert_eq!(entry.body.len(), acc.footprint);
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        Outcome::Complete(entry.body)
    }

    /// Pre-check, without changing state: would this sequence of fragments
    /// (all from one datagram, in the order [`Reassembler::on_fragment`]
    /// will see them) hit [`Drop::NoRoom`]?
    ///
    /// The answer is exact: each fragment is judged by the same rules
    /// against the current state plus the simulated effect of the earlier
    /// ones (new reassemblies, buffers, completions that free room), so
    /// several fragments of one new message count once. Fragments that would
    /// be dropped for another reason do not count. Past [`SIM_CAP`]
    /// fragments that change state the answer is `true`.
    pub(crate) fn would_run_out_of_room<'a>(&self, frags: impl Iterator<Item = (u16, &'a [u8])>, room: usize) -> bool {
        let mut frags = frags.peekable();
        if frags.peek().is_none() {
            return false;
        }
        let cap = self.cap(room);
        let mut sim =
            Sim { base: self, recs: [Rec::default(); SIM_CAP], n: 0, live: self.entries.len(), bytes: self.bytes };
        for (msgseq, data) in frags {
            match decide(&self.limits, &sim, msgseq, data, cap) {
                Err(Drop::NoRoom) => return true,
                Err(_) | Ok(None) => {}
                Ok(Some(acc)) => {
                    if !sim.apply(&acc) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Removes the reassemblies whose deadline (first fragment + 1 s +
    /// 0.5 s·count) is at or before `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|e| {
            let keep = e.deadline > now;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        before - self.entries.len()
    }

    /// The earliest deadline of a reassembly in progress.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.deadline).min()
    }

    /// Reassemblies in progress.
    #[allow(dead_code, reason = "API for metrics; used by the tests")]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of chunk buffers held.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

/// A simulated fragment of [`Reassembler::would_run_out_of_room`]. An
/// `index` of 0 marks a real reassembly that the simulation completed.
#[derive(Clone, Copy, Debug, Default)]
struct Rec {
    key: Key,
    index: u16,
    len: usize,
}

/// The real state plus the simulated fragments.
struct Sim<'r> {
    base: &'r Reassembler,
    recs: [Rec; SIM_CAP],
    n: usize,
    live: usize,
    bytes: usize,
}

impl Sim<'_> {
    fn recs(&self) -> &[Rec] {
        self.recs.get(..self.n).unwrap_or(&[])
    }

    /// A real reassembly the simulation completed.
    fn closed(&self, key: Key) -> bool {
        self.recs().iter().any(|r| r.index == 0 && r.key == key)
    }

    fn push(&mut self, rec: Rec) -> bool {
        match self.recs.get_mut(self.n) {
            Some(slot) => {
                *slot = rec;
                self.n += 1;
                true
            }
            None => false,
        }
    }

    /// Records an accepted fragment; `false` when out of simulation space.
    fn apply(&mut self, acc: &Accept<'_>) -> bool {
        self.bytes = self.bytes.saturating_add(acc.add);
        if !acc.completes {
            if acc.new {
                self.live += 1;
            }
            return self.push(Rec { key: acc.key, index: acc.index, len: acc.chunk.len() });
        }
        self.bytes = self.bytes.saturating_sub(acc.footprint);
        self.live = self.live.saturating_sub(1);
        let real = !self.closed(acc.key) && self.base.find(acc.key).is_some();
        let mut kept = 0;
        for i in 0..self.n {
            if let Some(&r) = self.recs.get(i)
                && (r.index == 0 || r.key != acc.key)
            {
                if let Some(slot) = self.recs.get_mut(kept) {
                    *slot = r;
                }
                kept += 1;
            }
        }
        self.n = kept;
        !real || self.push(Rec { key: acc.key, index: 0, len: 0 })
    }
}

impl View for Sim<'_> {
    fn known(&self, key: Key, index: u16) -> Known {
        let mut k = if self.closed(key) { Known::default() } else { self.base.known(key, index) };
        for r in self.recs() {
            if r.index == 0 || r.key != key {
                continue;
            }
            k.exists = true;
            k.have = k.have.saturating_add(1);
            k.has_index |= r.index == index;
            if r.index == key.count {
                k.tail = r.len;
            } else if k.chunk == 0 {
                k.chunk = r.len;
            }
        }
        k
    }

    fn in_any_range(&self, msgseq: u16) -> bool {
        self.base.entries.iter().any(|e| e.key.contains(msgseq) && !self.closed(e.key))
            || self.recs().iter().any(|r| r.index != 0 && r.key.contains(msgseq))
    }

    fn live(&self) -> usize {
        self.live
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs1::wire::fragment::{FRAGMENT_HEADER_LEN, fragment_count, fragment_range};
    use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
    use std::vec::Vec;

    const MAX: usize = 1434;
    const MAX_576: usize = 510;

    const LIMITS: Limits = Limits {
        max_fragments: 8192,
        min_lifetime: Duration::ZERO,
        max_reassemblies: 16,
        max_bytes: 4 << 20,
        max_message_size: 1 << 20,
    };

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn frag(frag_id: u16, index: u16, count: u16, chunk: &[u8]) -> Vec<u8> {
        let mut out = [0u8; FRAGMENT_HEADER_LEN];
        FragmentHeader { frag_id, index, count }.emit(&mut out);
        let mut v = out.to_vec();
        v.extend_from_slice(chunk);
        v
    }

    /// Our sender's split of `msg`: `(msgseq, data)` with consecutive
    /// msgseqs from `m1`.
    fn split(msg: &[u8], max_payload: usize, frag_id: u16, m1: u16) -> Vec<(u16, Vec<u8>)> {
        let count = fragment_count(msg.len(), max_payload);
        assert!(count >= 2);
        (0..count)
            .map(|i| {
                let range = fragment_range(msg.len(), max_payload, i);
                (seq::forward(m1, i as u32), frag(frag_id, i as u16 + 1, count as u16, &msg[range]))
            })
            .collect()
    }

    /// xorshift64*: a seeded generator for shuffles and test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Internal consistency: the byte count matches the buffers, the
    /// received counts match the bitmaps, and the limits hold.
    fn check(r: &Reassembler) {
        let mut sum = 0;
        for e in &r.entries {
            assert_eq!(e.bytes, e.body.len() + e.tail.len());
            let bits: u32 = e.received.iter().map(|w| w.count_ones()).sum();
            assert_eq!(bits, u32::from(e.have));
            assert!(e.have < e.key.count);
            sum += e.bytes;
        }
        assert_eq!(sum, r.bytes);
        assert!(r.len() <= r.limits.max_reassemblies);
        assert!(r.buffered_bytes() <= r.limits.max_bytes);
    }

    /// Feeds the fragments; all but the last give `Pending`, the last the
    /// message. Returns it.
    fn feed_all(r: &mut Reassembler, frags: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let (last, rest) = frags.split_last().expect("fragments");
        for (s, d) in rest {
            assert_eq!(r.on_fragment(at(0), *s, d, usize::MAX), Outcome::Pending);
            check(r);
        }
        match r.on_fragment(at(0), last.0, &last.1, usize::MAX) {
            Outcome::Complete(m) => m,
            o => panic!("expected completion, got {o:?}"),
        }
    }

    #[test]
    fn any_order_reassembles() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for max in [MAX, MAX_576] {
            for len in [1433, 2450, 2451, 3000, 100_000, 1 << 20] {
                let msg = rng.bytes(len);
                let frags = split(&msg, max, 7, 100);
                let mut reversed = frags.clone();
                reversed.reverse();
                let mut shuffled = frags.clone();
                rng.shuffle(&mut shuffled);
                for order in [&frags, &reversed, &shuffled] {
                    let mut r = Reassembler::new(LIMITS);
                    assert_eq!(feed_all(&mut r, order), msg, "{len} at {max}");
                    assert_eq!((r.len(), r.buffered_bytes()), (0, 0));
                    assert_eq!(r.next_expiry(), None);
                }
            }
        }
    }

    /// The final chunk may be larger than the others (1426 > 1024).
    #[test]
    fn final_chunk_larger_than_chunk() {
        let msg: Vec<u8> = (0..2450u32).map(|i| i as u8).collect();
        let frags = split(&msg, MAX, 3, 9);
        assert_eq!(frags[1].1.len() - FRAGMENT_HEADER_LEN, 1426);
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(0), frags[1].0, &frags[1].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.buffered_bytes(), 1426);
        assert_eq!(feed_all(&mut r, &frags[..1]), msg);
    }

    #[test]
    fn duplicates_are_ignored() {
        let msg = Rng(5).bytes(5000);
        let frags = split(&msg, MAX, 1, 1);
        let mut r = Reassembler::new(LIMITS);
        for (s, d) in frags[1..].iter().rev() {
            assert_eq!(r.on_fragment(at(0), *s, d, usize::MAX), Outcome::Pending);
            let bytes = r.buffered_bytes();
            assert_eq!(r.on_fragment(at(0), *s, d, usize::MAX), Outcome::Duplicate);
            assert_eq!(r.buffered_bytes(), bytes);
            check(&r);
        }
        // A duplicate with other bytes (same header) is still a duplicate.
        let mut other = frags[1].1.clone();
        other.truncate(FRAGMENT_HEADER_LEN + 3);
        assert_eq!(r.on_fragment(at(0), frags[1].0, &other, usize::MAX), Outcome::Duplicate);
        assert_eq!(r.on_fragment(at(0), frags[0].0, &frags[0].1, usize::MAX), Outcome::Complete(msg));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn msgseq_wraps() {
        let msg = Rng(9).bytes(5000);
        let frags = split(&msg, MAX, 65535, 65534);
        let seqs: Vec<u16> = frags.iter().map(|f| f.0).collect();
        assert_eq!(seqs, [65534, 65535, 1, 2, 3]);
        let mut shuffled = frags.clone();
        Rng(3).shuffle(&mut shuffled);
        for order in [frags.clone(), shuffled] {
            let mut r = Reassembler::new(LIMITS);
            assert_eq!(feed_all(&mut r, &order), msg);
        }
        // Inside the wrapped range, a wrong header is inconsistent.
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(0), 65534, &frags[0].1, usize::MAX), Outcome::Pending);
        assert_eq!(
            r.on_fragment(at(0), 2, &frag(65535, 3, 5, &[1; 1024]), usize::MAX),
            Outcome::Dropped(Drop::Inconsistent)
        );
        assert_eq!(r.on_fragment(at(0), 4, &frag(9, 1, 2, &[1; 10]), usize::MAX), Outcome::Pending);
    }

    #[test]
    fn validation() {
        let limits = Limits { max_fragments: 100, max_message_size: 3000, ..LIMITS };
        let mut r = Reassembler::new(limits);
        let invalid = Outcome::Dropped(Drop::Invalid);
        let chunk = [7u8; 1024];
        assert_eq!(r.on_fragment(at(0), 10, &frag(0, 1, 2, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 1, 1, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 1, 0, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 1, 101, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 0, 2, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 3, 2, &chunk), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 1, 2, &[]), usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &[0, 1, 0, 1, 0], usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 10, &[], usize::MAX), invalid);
        assert_eq!(r.on_fragment(at(0), 0, &frag(1, 1, 2, &chunk), usize::MAX), invalid);
        // count = max_fragments is fine.
        assert_eq!(r.on_fragment(at(0), 10, &frag(1, 100, 100, &[1]), usize::MAX), Outcome::Pending);
        // 3 × 1024 + 1 > 3000, known from a non-final fragment…
        let too_large = Outcome::Dropped(Drop::TooLarge);
        assert_eq!(r.on_fragment(at(0), 500, &frag(2, 1, 4, &chunk), usize::MAX), too_large);
        // …or from the final one: 2998 + 3·1 > 3000.
        assert_eq!(r.on_fragment(at(0), 600, &frag(3, 4, 4, &[1; 2998]), usize::MAX), too_large);
        // …or once both are known: 2·1024 + 953 > 3000.
        assert_eq!(r.on_fragment(at(0), 700, &frag(4, 3, 3, &[1; 953]), usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(0), 698, &frag(4, 1, 3, &chunk), usize::MAX), too_large);
        assert_eq!(r.on_fragment(at(0), 800, &frag(5, 3, 3, &[1; 952]), usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(0), 798, &frag(5, 1, 3, &chunk), usize::MAX), Outcome::Pending);
        assert!(matches!(
            r.on_fragment(at(0), 799, &frag(5, 2, 3, &chunk), usize::MAX),
            Outcome::Complete(m) if m.len() == 3000
        ));
        // A count·chunk overflow is too large, not a panic.
        let huge = Limits { max_fragments: u16::MAX, max_message_size: usize::MAX, max_bytes: usize::MAX, ..LIMITS };
        let mut r = Reassembler::new(huge);
        assert_eq!(r.on_fragment(at(0), 1000, &frag(1, 1, 3, &[0; 10]), usize::MAX), Outcome::Pending);
        check(&r);
    }

    #[test]
    fn inconsistent_fragments_in_a_range() {
        let msg = Rng(11).bytes(3000);
        let frags = split(&msg, MAX, 7, 100);
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(0), 100, &frags[0].1, usize::MAX), Outcome::Pending);
        let inconsistent = Outcome::Dropped(Drop::Inconsistent);
        let chunk = [0xAA; 1024];
        // Different frag_id, different count, index not matching position.
        assert_eq!(r.on_fragment(at(0), 101, &frag(8, 2, 3, &chunk), usize::MAX), inconsistent);
        assert_eq!(r.on_fragment(at(0), 101, &frag(7, 2, 4, &chunk), usize::MAX), inconsistent);
        assert_eq!(r.on_fragment(at(0), 101, &frag(7, 3, 3, &[1; 100]), usize::MAX), inconsistent);
        assert_eq!(r.on_fragment(at(0), 102, &frag(7, 1, 3, &chunk), usize::MAX), inconsistent);
        // Right header, wrong chunk size.
        assert_eq!(r.on_fragment(at(0), 101, &frag(7, 2, 3, &[0xAA; 1000]), usize::MAX), inconsistent);
        assert_eq!(r.on_fragment(at(0), 101, &frag(7, 2, 3, &[0xAA; 1025]), usize::MAX), inconsistent);
        // Outside the range: a separate reassembly.
        assert_eq!(r.on_fragment(at(0), 103, &frag(8, 1, 2, &chunk), usize::MAX), Outcome::Pending);
        assert_eq!(r.len(), 2);
        check(&r);
        // The genuine message still completes, with its own bytes.
        assert_eq!(r.on_fragment(at(0), 102, &frags[2].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(0), 101, &frags[1].1, usize::MAX), Outcome::Complete(msg));
        assert_eq!(r.len(), 1);
    }

    /// §16 bug 3: a reference retransmit drops the fragment header and uses
    /// a new msgseq. Its chunk bytes are misread as a header: dropped, or a
    /// bogus reassembly that expires and never delivers.
    #[test]
    fn headerless_reference_retransmit() {
        let mut msg = Rng(13).bytes(3000);
        // Chunk 2 (bytes 1024..) parses as frag_id 5, index 2, count 3.
        msg[1024..1030].copy_from_slice(&[0, 5, 0, 2, 0, 3]);
        // Chunk 3 (bytes 2048..) parses as frag_id 0: invalid.
        msg[2048..2050].copy_from_slice(&[0, 0]);
        let frags = split(&msg, MAX, 7, 100);
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(10), 100, &frags[0].1, usize::MAX), Outcome::Pending);
        // Fragments 2 and 3 are "lost" and re-sent header-less as msgseq 103, 104.
        let bogus_2 = &frags[1].1[FRAGMENT_HEADER_LEN..];
        let bogus_3 = &frags[2].1[FRAGMENT_HEADER_LEN..];
        assert_eq!(r.on_fragment(at(10), 104, bogus_3, usize::MAX), Outcome::Dropped(Drop::Invalid));
        // Outside every range: a bogus reassembly at m1 = 102 (count 3 → 103 is index 2).
        assert_eq!(r.on_fragment(at(10), 103, bogus_2, usize::MAX), Outcome::Pending);
        assert_eq!(r.len(), 2);
        // It expires at 10 + 1 + 1.5 s together with the genuine one; nothing
        // is delivered.
        assert_eq!(r.next_expiry(), Some(Instant::from_millis(12_500)));
        assert_eq!(r.expire(Instant::from_millis(12_499)), 0);
        assert_eq!(r.expire(Instant::from_millis(12_500)), 2);
        assert_eq!((r.len(), r.buffered_bytes()), (0, 0));

        // With the genuine retransmits (headers kept, rule 4) the message
        // completes even alongside the bogus state.
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(10), 100, &frags[0].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(10), 103, bogus_2, usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(10), 101, &frags[1].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(10), 102, &frags[2].1, usize::MAX), Outcome::Complete(msg));
        assert_eq!(r.len(), 1);
        assert_eq!(r.expire(Instant::from_millis(12_500)), 1);
        assert_eq!((r.len(), r.buffered_bytes()), (0, 0));
    }

    fn pre(r: &Reassembler, frags: &[(u16, Vec<u8>)]) -> bool {
        r.would_run_out_of_room(frags.iter().map(|(s, d)| (*s, d.as_slice())), usize::MAX)
    }

    #[test]
    fn reassembly_count_bound() {
        let mut r = Reassembler::new(LIMITS);
        let msgs: Vec<Vec<(u16, Vec<u8>)>> =
            (0..17u16).map(|i| split(&[i as u8; 3000], MAX, i + 1, 1000 + 10 * i)).collect();
        for m in &msgs[..16] {
            assert!(!pre(&r, &m[..1]));
            assert_eq!(r.on_fragment(at(0), m[0].0, &m[0].1, usize::MAX), Outcome::Pending);
        }
        assert_eq!(r.len(), 16);
        let no_room = Outcome::Dropped(Drop::NoRoom);
        for f in &msgs[16] {
            assert!(pre(&r, std::slice::from_ref(f)));
            assert_eq!(r.on_fragment(at(0), f.0, &f.1, usize::MAX), no_room);
        }
        // Fragments of existing reassemblies still fit.
        assert!(!pre(&r, &msgs[3][1..2]));
        assert_eq!(r.on_fragment(at(0), msgs[3][1].0, &msgs[3][1].1, usize::MAX), Outcome::Pending);
        // Invalid or inconsistent fragments are not "no room".
        let junk = [(2000, frag(0, 1, 2, &[1])), (1001, frag(99, 2, 3, &[1]))];
        assert!(!pre(&r, &junk));
        // A datagram completing one message frees room for a new one after it…
        let mut d = std::vec![msgs[3][2].clone(), msgs[16][0].clone()];
        assert!(!pre(&r, &d));
        // …but not before it.
        d.reverse();
        assert!(pre(&r, &d));
        d.reverse();
        assert!(matches!(r.on_fragment(at(0), d[0].0, &d[0].1, usize::MAX), Outcome::Complete(_)));
        assert_eq!(r.on_fragment(at(0), d[1].0, &d[1].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.len(), 16);
        check(&r);
    }

    #[test]
    fn several_fragments_of_a_new_message_count_once() {
        let limits = Limits { max_reassemblies: 2, ..LIMITS };
        let mut r = Reassembler::new(limits);
        let a = split(&[1; 3000], MAX_576, 1, 100);
        let b = split(&[2; 3000], MAX_576, 2, 200);
        let c = split(&[3; 3000], MAX_576, 3, 300);
        assert_eq!(r.on_fragment(at(0), a[0].0, &a[0].1, usize::MAX), Outcome::Pending);
        let mut d = std::vec![b[0].clone(), b[1].clone(), b[5].clone(), a[1].clone()];
        assert!(!pre(&r, &d));
        d.push(c[0].clone());
        assert!(pre(&r, &d));
        for (s, data) in &d[..4] {
            assert_eq!(r.on_fragment(at(0), *s, data, usize::MAX), Outcome::Pending);
        }
        assert_eq!(r.on_fragment(at(0), d[4].0, &d[4].1, usize::MAX), Outcome::Dropped(Drop::NoRoom));
        // A duplicate within one datagram is not counted twice.
        let mut r = Reassembler::new(Limits { max_bytes: 2 * 502 + 5 * 502, ..limits });
        // b allocates 5·502 bytes with its first non-final fragment; a
        // 2·502 with its second; duplicates allocate nothing.
        let d = std::vec![b[0].clone(), b[0].clone(), a[5].clone(), a[1].clone(), a[1].clone()];
        assert_eq!(a.len(), 6);
        assert!(pre(&r, &d));
        let d = std::vec![b[0].clone(), b[0].clone(), b[1].clone()];
        assert!(!pre(&r, &d));
        for (s, data) in &d {
            assert_ne!(r.on_fragment(at(0), *s, data, usize::MAX), Outcome::Dropped(Drop::NoRoom));
        }
        check(&r);
    }

    #[test]
    fn byte_budget() {
        let limits = Limits { max_bytes: 9_999, ..LIMITS };
        let mut r = Reassembler::new(limits);
        // Each 5000-byte message buffers 4·1024 bytes from its first
        // fragment; its final chunk (904 bytes) when that arrives.
        let msgs: Vec<_> =
            (0..3u16).map(|i| split(&Rng(u64::from(i) + 1).bytes(5000), MAX, i + 1, 100 * (i + 1))).collect();
        for m in &msgs[..2] {
            assert!(!pre(&r, &m[..1]));
            assert_eq!(r.on_fragment(at(0), m[0].0, &m[0].1, usize::MAX), Outcome::Pending);
        }
        assert_eq!(r.buffered_bytes(), 8192);
        assert!(pre(&r, &msgs[2][..1]));
        assert_eq!(r.on_fragment(at(0), msgs[2][0].0, &msgs[2][0].1, usize::MAX), Outcome::Dropped(Drop::NoRoom));
        // The final chunk alone still fits: 8192 + 904 ≤ 9 999, and once
        // stored, the body no longer does.
        let tail = msgs[2].last().expect("tail");
        assert!(!pre(&r, std::slice::from_ref(tail)));
        assert_eq!(r.on_fragment(at(0), tail.0, &tail.1, usize::MAX), Outcome::Pending);
        assert_eq!(r.buffered_bytes(), 8192 + 904);
        let tail0 = msgs[0].last().expect("tail");
        assert!(pre(&r, std::slice::from_ref(tail0)));
        assert_eq!(r.on_fragment(at(0), tail0.0, &tail0.1, usize::MAX), Outcome::Dropped(Drop::NoRoom));
        check(&r);
        // A message that could never fit the budget is too large, not "no room".
        let big = split(&[0; 20_000], MAX, 9, 5000);
        assert!(!pre(&r, &big[..1]));
        assert_eq!(r.on_fragment(at(0), big[0].0, &big[0].1, usize::MAX), Outcome::Dropped(Drop::TooLarge));
        // Expiry frees it all.
        assert_eq!(r.expire(at(100)), 3);
        assert_eq!((r.len(), r.buffered_bytes()), (0, 0));
        for m in &msgs {
            assert_eq!(feed_all(&mut r, m), m_bytes(m));
        }
    }

    /// The message a split came from.
    fn m_bytes(frags: &[(u16, Vec<u8>)]) -> Vec<u8> {
        frags.iter().flat_map(|(_, d)| d[FRAGMENT_HEADER_LEN..].iter().copied()).collect()
    }

    #[test]
    fn expiry_by_injected_time() {
        let mut r = Reassembler::new(LIMITS);
        let a = split(&[1; 3000], MAX, 1, 100); // count 3: 2.5 s
        let b = split(&[2; 5000], MAX, 2, 200); // count 5: 3.5 s
        assert_eq!(r.next_expiry(), None);
        assert_eq!(r.on_fragment(at(10), a[0].0, &a[0].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.on_fragment(at(10), b[4].0, &b[4].1, usize::MAX), Outcome::Pending);
        // A fragment that makes progress restarts the lifetime: `a` now
        // expires 2.5 s after 12 s, `b` 3.5 s after 10 s.
        assert_eq!(r.on_fragment(at(12), a[1].0, &a[1].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.next_expiry(), Some(Instant::from_millis(13_500)));
        assert_eq!(r.expire(Instant::from_micros(13_499_999)), 0);
        assert_eq!(r.len(), 2);
        assert_eq!(r.expire(Instant::from_millis(13_500)), 1);
        assert_eq!(r.next_expiry(), Some(Instant::from_millis(14_500)));
        assert_eq!(r.expire(Instant::from_micros(14_499_999)), 0);
        // A duplicate is not progress.
        assert_eq!(r.on_fragment(at(14), a[1].0, &a[1].1, usize::MAX), Outcome::Duplicate);
        assert_eq!(r.expire(Instant::from_millis(14_500)), 1);
        assert_eq!((r.len(), r.buffered_bytes(), r.next_expiry()), (0, 0, None));
        // An expired message's late fragment starts afresh.
        assert_eq!(r.on_fragment(at(20), a[2].0, &a[2].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.next_expiry(), Some(Instant::from_millis(22_500)));
        // The maximum count expires after 1 + 4096 s.
        let mut r = Reassembler::new(LIMITS);
        assert_eq!(r.on_fragment(at(0), 9, &frag(1, 8192, 8192, &[1]), usize::MAX), Outcome::Pending);
        assert_eq!(r.next_expiry(), Some(at(4097)));
        // The connection's floor lengthens short lifetimes.
        let mut r = Reassembler::new(Limits { min_lifetime: Duration::from_secs(6), ..LIMITS });
        assert_eq!(r.on_fragment(at(10), a[0].0, &a[0].1, usize::MAX), Outcome::Pending);
        assert_eq!(r.next_expiry(), Some(at(16)));
    }

    // ---- property tests ----

    /// A fragment-ish message: often a structured header with small values
    /// (so keys and ranges collide), sometimes raw bytes.
    #[derive(Clone, Debug)]
    struct Op {
        msgseq: u16,
        data: Vec<u8>,
        /// Ends a datagram (and advances time) after this op.
        end: bool,
        advance_ms: u16,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Op {
            let small = |g: &mut Gen, n: u16| u16::arbitrary(g) % n;
            let bytes = |g: &mut Gen, n: u16| -> Vec<u8> { (0..n).map(|_| u8::arbitrary(g)).collect() };
            let (msgseq, data) = match small(g, 10) {
                // Raw bytes.
                0 => (u16::arbitrary(g), Vec::<u8>::arbitrary(g)),
                // Small header values, so keys and ranges collide.
                1..=3 => {
                    let msgseq = seq::forward(65528, u32::from(small(g, 20)));
                    let len = small(g, 40);
                    let chunk = bytes(g, len);
                    let data = frag(small(g, 3), small(g, 7), small(g, 7), &chunk);
                    (msgseq, data)
                }
                // A fragment of one of a few consistent messages (across the
                // msgseq wrap), so reassemblies complete; the chunk size
                // depends on the message, and only occasionally is wrong.
                _ => {
                    let id = 1 + small(g, 6);
                    let count = 2 + id % 4;
                    let m1 = seq::forward(65530, u32::from(id) * 7);
                    let index = 1 + small(g, count);
                    let len = if index == count || small(g, 20) == 0 { 1 + small(g, 30) } else { 4 * id };
                    let chunk = bytes(g, len);
                    (seq::forward(m1, u32::from(index - 1)), frag(id, index, count, &chunk))
                }
            };
            Op { msgseq, data, end: small(g, 3) == 0, advance_ms: small(g, 1500) }
        }
    }

    /// Arbitrary fragments never panic, never exceed the limits, keep the
    /// accounting exact, and the pre-check agrees exactly with
    /// `on_fragment` about running out of room.
    fn prop_limits_and_precheck(ops: Vec<Op>) -> bool {
        let limits = Limits {
            max_fragments: 5,
            min_lifetime: Duration::ZERO,
            max_reassemblies: 3,
            max_bytes: 200,
            max_message_size: 120,
        };
        let mut r = Reassembler::new(limits);
        let mut now = at(0);
        let mut datagram: Vec<(u16, Vec<u8>)> = Vec::new();
        for op in ops {
            datagram.push((op.msgseq, op.data));
            if !op.end {
                continue;
            }
            let predicted = pre(&r, &datagram);
            let mut no_room = false;
            for (s, d) in datagram.drain(..) {
                match r.on_fragment(now, s, &d, usize::MAX) {
                    Outcome::Dropped(Drop::NoRoom) => no_room = true,
                    Outcome::Complete(m) => assert!(m.len() <= limits.max_message_size),
                    _ => {}
                }
                check(&r);
            }
            assert_eq!(predicted, no_room);
            now += Duration::from_millis(u64::from(op.advance_ms));
            r.expire(now);
            check(&r);
            if let Some(t) = r.next_expiry() {
                assert!(t > now);
            }
        }
        true
    }

    #[test]
    fn quickcheck_limits_and_precheck() {
        QuickCheck::new().tests(2000).quickcheck(prop_limits_and_precheck as fn(Vec<Op>) -> bool);
    }

    /// A shuffled genuine message among garbage fragments at distant
    /// msgseqs completes exactly once, with its bytes.
    fn prop_genuine_among_garbage(seed: u64, len: u16, garbage: Vec<Op>) -> TestResult {
        let mut rng = Rng(seed | 1);
        let len = 1433 + usize::from(len) % 20_000;
        let msg = rng.bytes(len);
        let mut frags = split(&msg, MAX_576, 4, 1000);
        rng.shuffle(&mut frags);
        let genuine = frags.len();
        let mut all: Vec<(bool, u16, Vec<u8>)> = frags.into_iter().map(|(s, d)| (true, s, d)).collect();
        for op in garbage {
            // msgseqs 20000..40000: no garbage range reaches 1000..1050, and
            // the genuine range covers no garbage msgseq.
            let s = 20_000 + op.msgseq % 20_000;
            all.insert(rng.below(all.len() + 1), (false, s, op.data));
        }
        let limits = Limits { max_reassemblies: 1000, max_bytes: 64 << 20, ..LIMITS };
        let mut r = Reassembler::new(limits);
        let mut delivered = 0;
        let mut seen = 0;
        for (is_genuine, s, d) in all {
            let out = r.on_fragment(at(0), s, &d, usize::MAX);
            if !is_genuine {
                continue;
            }
            seen += 1;
            match out {
                Outcome::Complete(m) => {
                    if m != msg || seen != genuine {
                        return TestResult::failed();
                    }
                    delivered += 1;
                }
                Outcome::Pending => {}
                _ => return TestResult::failed(),
            }
        }
        TestResult::from_bool(delivered == 1)
    }

    #[test]
    fn quickcheck_genuine_among_garbage() {
        QuickCheck::new().tests(300).quickcheck(prop_genuine_among_garbage as fn(u64, u16, Vec<Op>) -> TestResult);
    }
}
