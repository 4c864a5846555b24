//! The endpoint's scheduler: which connections have a datagram to send now
//! (the ready queue, served in turn) and when the next timer of any
//! connection fires (a min-heap of `(when, slot, generation)` with lazy
//! deletion). Both are settled lazily from the connections changed since,
//! so a burst of inputs costs one evaluation per connection.

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::table::{Sched, Table};
use crate::config::EndpointConfig;
use crate::event::ConnectionId;
use crate::session::Session;
use crate::time::Instant;

#[derive(Default)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) struct Scheduler {
    ready: VecDeque<ConnectionId>,
    /// Connections changed since their readiness and timer were last settled.
    dirty: Vec<ConnectionId>,
    /// Connections whose cached timer is stale (settled only when read).
    timer_dirty: Vec<ConnectionId>,
    /// Every connection's timer, earliest first, as `(when, slot, generation)`.
    /// Lazy deletion: an entry is live only while its slot (same
    /// generation) still has `queued == Some(when)`; stale ones are dropped
    /// when they surface, or all at once when they outnumber the live ones.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Scratch list of the connections due in `take_due`.
    due: Vec<ConnectionId>,
}

impl Scheduler {
    /// Marks `id`, whose scheduling state is `sched`, changed by an input.
    #[inline]
    pub(super) fn touch(&mut self, id: ConnectionId, sched: &mut Sched) {
        if !sched.dirty {
            sched.dirty = true;
            self.dirty.push(id);
        }
        if !sched.timer_dirty {
            sched.timer_dirty = true;
            self.timer_dirty.push(id);
        }
    }

    /// Settles every changed connection: queues it for transmission if a
    /// datagram is due, and caches its transmit time.
    pub(super) fn settle(&mut self, table: &mut Table, now: Instant, cfg: &EndpointConfig) {
        for k in 0..self.dirty.len() {
            let id = self.dirty[k];
            let Some(slot) = table.slot_mut(id) else {
                continue;
            };
            slot.sched.dirty = false;
            let transmit = slot.conn.as_ref().and_then(|c| c.next_transmit(now, cfg));
            slot.sched.transmit_at = transmit;
            if !slot.sched.in_ready_queue && transmit.is_some_and(|t| t <= now) {
                slot.sched.in_ready_queue = true;
                self.ready.push_back(id);
            }
        }
        self.dirty.clear();
    }

    /// Settles, then recomputes the cached timer of every connection whose
    /// timer is stale, and queues the changed ones in the timer heap. Only
    /// `poll_timeout` and `handle_timeout` read timers, so the per-datagram
    /// path never pays for this; they cost O(log n) per changed connection
    /// instead of a scan of every connection.
    pub(super) fn settle_timers(&mut self, table: &mut Table, now: Instant, cfg: &EndpointConfig) {
        self.settle(table, now, cfg);
        for k in 0..self.timer_dirty.len() {
            let id = self.timer_dirty[k];
            let Some(slot) = table.slot_mut(id) else {
                continue;
            };
            let sched = &mut slot.sched;
            sched.timer_dirty = false;
            // A transmit time cached by an earlier settle may have come due
            // since (a caller ticking `handle_timeout` without reading
            // `poll_timeout`): queue it now, since `poll_timeout` below only
            // keeps transmit times still in the future as timers.
            if !sched.in_ready_queue && sched.transmit_at.is_some_and(|t| t <= now) {
                sched.in_ready_queue = true;
                self.ready.push_back(id);
            }
            let timeout = slot.conn.as_mut().and_then(|c| c.poll_timeout(now, sched.transmit_at));
            sched.timeout = timeout;
            if sched.queued != timeout {
                sched.queued = timeout;
                if let Some(when) = timeout {
                    self.timers.push(Reverse((when, id.index, id.generation)));
                }
            }
        }
        self.timer_dirty.clear();
        if self.timers.len() > 2 * table.slots.len() + 64 {
            // Mostly stale entries: rebuild from the live ones (in place).
            let mut entries = core::mem::take(&mut self.timers).into_vec();
            entries.clear();
            entries.extend(table.slots.iter().enumerate().filter_map(|(i, s)| {
                s.conn.as_ref()?;
                Some(Reverse((s.sched.queued?, i as u32, s.generation)))
            }));
            self.timers = BinaryHeap::from(entries);
        }
    }

    /// The next live connection in the ready queue, and whether its
    /// datagram is due at `now` (the endpoint settled it at `now` or
    /// earlier and nothing changed since; being due only becomes truer with
    /// time).
    pub(super) fn pop_ready(&mut self, table: &mut Table, now: Instant) -> Option<(ConnectionId, bool)> {
        while let Some(id) = self.ready.pop_front() {
            let Some(slot) = table.slot_mut(id) else {
                continue;
            };
            slot.sched.in_ready_queue = false;
            debug_assert!(!slot.sched.dirty);
            return Some((id, slot.sched.transmit_at.is_some_and(|t| t <= now)));
        }
        None
    }

    /// Takes every connection whose timer is due at `now`, in slot order
    /// (as a scan would). The caller returns the list with [`Scheduler::done`].
    pub(super) fn take_due(&mut self, table: &mut Table, now: Instant) -> Vec<ConnectionId> {
        let mut due = core::mem::take(&mut self.due);
        while let Some(&Reverse((when, index, generation))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            let slot = &mut table.slots[index as usize];
            if slot.generation == generation && slot.sched.queued == Some(when) {
                slot.sched.queued = None;
                due.push(ConnectionId { index, generation });
            }
        }
        due.sort_unstable_by_key(|id| id.index);
        due
    }

    /// Returns the scratch list of [`Scheduler::take_due`].
    pub(super) fn done(&mut self, mut due: Vec<ConnectionId>) {
        due.clear();
        self.due = due;
    }

    /// The earliest live timer (stale entries met on the way are dropped).
    pub(super) fn next_timer(&mut self, table: &Table) -> Option<Instant> {
        while let Some(&Reverse((when, index, generation))) = self.timers.peek() {
            let slot = &table.slots[index as usize];
            if slot.generation == generation && slot.sched.queued == Some(when) {
                return Some(when);
            }
            self.timers.pop();
        }
        None
    }

    /// Entries in the timer heap (tests).
    #[cfg(test)]
    pub(super) fn heap_len(&self) -> usize {
        self.timers.len()
    }
}
