//! The connection table: slots addressed by generation-checked
//! [`ConnectionId`]s, the free list, and MPGS/1's route from a peer's
//! address to its slot. The one place that turns an id into a connection.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::event::ConnectionId;
use crate::mpgs2::CID_LEN;
use crate::rng::Rng;
use crate::session::Connection;
use crate::time::Instant;

/// The endpoint's scheduling state of one slot's connection (see
/// `schedule.rs`); the connection itself knows nothing of it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sched {
    /// Waiting in the ready queue.
    pub(super) in_ready_queue: bool,
    /// Changed since its readiness was last settled.
    pub(super) dirty: bool,
    /// `next_transmit` as of the last settle (valid while not dirty).
    pub(super) transmit_at: Option<Instant>,
    /// `timeout` is stale.
    pub(super) timer_dirty: bool,
    /// The connection's `poll_timeout` as of the last timer settle.
    pub(super) timeout: Option<Instant>,
    /// The timer of this slot's live entry in the timer heap.
    pub(super) queued: Option<Instant>,
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) conn: Option<Connection>,
    pub(super) sched: Sched,
    /// The connection id routed to this slot (a server's MPGS/2 connection).
    cid: Option<[u8; CID_LEN]>,
}

/// The mask over the slot index in connection id `cid` (its first four
/// bytes are random): MurmurHash3's 64-bit finalizer of the key and those
/// bytes. It hides indices from observers; it is not a cipher (MPGS2.md
/// §2.3: nothing relies on ids being unguessable).
#[inline]
fn cid_mask(key: u64, cid: &[u8; CID_LEN]) -> u32 {
    let mut r = [0u8; 4];
    r.copy_from_slice(&cid[..4]);
    let mut x = key ^ u64::from(u32::from_le_bytes(r));
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    (x >> 32) as u32
}

/// Bytes of one slot of the connection table (the connection lives inline).
pub(crate) const SLOT_SIZE: usize = core::mem::size_of::<Slot>();

#[derive(Default)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) struct Table {
    pub(super) slots: Vec<Slot>,
    /// Released slots, reused oldest first so a slot's generation wraps as
    /// late as possible.
    free: VecDeque<u32>,
    /// MPGS/1 routes (and a client's MPGS/2 connections): a peer's address
    /// to its slot.
    by_addr: BTreeMap<SocketAddr, u32>,
    /// The key that hides slot indices in a server's MPGS/2 connection ids
    /// (drawn on the first one): see [`Table::new_cid`].
    cid_key: Option<u64>,
    /// Slots with a connection id route.
    cid_routes: usize,
}

impl Table {
    /// The id the next [`Table::insert`] will return.
    pub(super) fn vacant(&self) -> ConnectionId {
        match self.free.front() {
            Some(&index) => ConnectionId { index, generation: self.slots[index as usize].generation },
            None => ConnectionId { index: self.slots.len() as u32, generation: 0 },
        }
    }

    /// Puts `conn`, made for [`Table::vacant`]'s id, in its slot and routes
    /// `addr` to it.
    pub(super) fn insert(&mut self, addr: SocketAddr, conn: Connection) -> ConnectionId {
        let id = self.place(conn);
        self.by_addr.insert(addr, id.index);
        id
    }

    /// A connection id for the connection the next [`Table::insert_cid`]
    /// will place (MPGS2.md §2.3, Decision (connection ids)): four random
    /// bytes `r`, then the slot index XOR a mask keyed by the endpoint's
    /// secret and `r`, so a short packet finds its slot without a search
    /// while on the wire the id looks random. The whole id is compared on
    /// arrival, so ids of closed connections route nowhere.
    pub(super) fn new_cid(&mut self, rng: &mut Rng) -> [u8; CID_LEN] {
        let key = *self.cid_key.get_or_insert_with(|| {
            let mut k = [0u8; 8];
            rng.fill(&mut k);
            u64::from_le_bytes(k)
        });
        let mut cid = [0u8; CID_LEN];
        rng.fill(&mut cid[..4]);
        let index = self.vacant().index ^ cid_mask(key, &cid);
        cid[4..].copy_from_slice(&index.to_le_bytes());
        cid
    }

    /// Puts `conn`, made for [`Table::vacant`]'s id, in its slot and routes
    /// connection id `cid` (from [`Table::new_cid`]) to it (a server's
    /// MPGS/2 connection).
    pub(super) fn insert_cid(&mut self, cid: [u8; CID_LEN], conn: Connection) -> ConnectionId {
        let id = self.place(conn);
        self.slots[id.index as usize].cid = Some(cid);
        self.cid_routes += 1;
        id
    }

    /// The connection routed from connection id `cid` (MPGS/2 at a server).
    #[inline]
    pub(super) fn by_cid(&self, cid: &[u8; CID_LEN]) -> Option<ConnectionId> {
        let key = self.cid_key?;
        let mut index = [0u8; 4];
        index.copy_from_slice(&cid[4..]);
        let index = u32::from_le_bytes(index) ^ cid_mask(key, cid);
        let slot = self.slots.get(index as usize)?;
        (slot.cid.as_ref() == Some(cid) && slot.conn.is_some())
            .then_some(ConnectionId { index, generation: slot.generation })
    }

    fn place(&mut self, conn: Connection) -> ConnectionId {
        let index = match self.free.pop_front() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.conn = Some(conn);
                slot.sched = Sched::default();
                slot.cid = None;
                i
            }
            None => {
                self.slots.push(Slot { generation: 0, conn: Some(conn), sched: Sched::default(), cid: None });
                (self.slots.len() - 1) as u32
            }
        };
        ConnectionId { index, generation: self.slots[index as usize].generation }
    }

    /// The live slot `id` names, if its generation still matches.
    #[inline]
    pub(super) fn slot(&self, id: ConnectionId) -> Option<&Slot> {
        self.slots.get(id.index as usize).filter(|s| s.generation == id.generation && s.conn.is_some())
    }

    /// The live slot `id` names, mutably.
    #[inline]
    pub(super) fn slot_mut(&mut self, id: ConnectionId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index as usize).filter(|s| s.generation == id.generation && s.conn.is_some())
    }

    /// The live connection `id` names.
    #[inline]
    pub(super) fn get(&self, id: ConnectionId) -> Option<&Connection> {
        self.slot(id)?.conn.as_ref()
    }

    /// The live connection `id` names, mutably.
    #[inline]
    pub(super) fn get_mut(&mut self, id: ConnectionId) -> Option<&mut Connection> {
        self.slot_mut(id)?.conn.as_mut()
    }

    /// The connection routed from `addr` (MPGS/1).
    #[inline]
    pub(super) fn by_addr(&self, addr: SocketAddr) -> Option<ConnectionId> {
        let &index = self.by_addr.get(&addr)?;
        Some(ConnectionId { index, generation: self.slots[index as usize].generation })
    }

    /// Whether any address routes to a connection (at a server: whether any
    /// MPGS/1 connection lives), so MPGS/2's per-datagram address checks
    /// can be skipped when none does.
    #[inline]
    pub(super) fn has_addr_routes(&self) -> bool {
        !self.by_addr.is_empty()
    }

    /// Routes from addresses and from connection ids.
    pub(super) fn routes(&self) -> usize {
        self.by_addr.len() + self.cid_routes
    }

    /// Empties `id`'s slot (its generation moves on) and returns its
    /// connection.
    pub(super) fn release(&mut self, id: ConnectionId) -> Option<Connection> {
        let slot = &mut self.slots[id.index as usize];
        let conn = slot.conn.take();
        if let Some(c) = &conn
            && self.by_addr.get(&c.remote()) == Some(&id.index)
        {
            self.by_addr.remove(&c.remote());
        }
        if slot.cid.take().is_some() {
            self.cid_routes -= 1;
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.sched.queued = None;
        self.free.push_back(id.index);
        conn
    }

    /// Every live connection with its id, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnectionId, &Connection)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((ConnectionId { index: i as u32, generation: s.generation }, s.conn.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Seed;

    /// A connection id names its slot through the mask, for every slot; on
    /// the wire the index does not show (the last four bytes differ from it
    /// and between ids of one slot).
    #[test]
    fn connection_ids_name_their_slot_and_hide_it() {
        let mut t = Table::default();
        let mut rng = Rng::new(Seed::from_u64(7));
        let mut plain = 0;
        for index in 0..2000u32 {
            assert_eq!(t.vacant().index, index);
            let (a, b) = (t.new_cid(&mut rng), t.new_cid(&mut rng));
            assert_ne!(a, b);
            let key = t.cid_key.expect("drawn on the first id");
            for cid in [a, b] {
                let mut w = [0u8; 4];
                w.copy_from_slice(&cid[4..]);
                assert_eq!(u32::from_le_bytes(w) ^ cid_mask(key, &cid), index);
                plain += usize::from(u32::from_le_bytes(w) == index);
            }
            assert_ne!(a[4..], b[4..], "two ids of one slot share no visible index");
            t.slots.push(Slot { generation: 0, conn: None, sched: Sched::default(), cid: None });
        }
        assert!(plain <= 2, "the index shows in {plain} of 4,000 ids");
        // An id naming a slot past the table, or a slot without a live
        // connection (even one holding that id), routes nothing. (Live
        // connections with other ids: the reset tests in tests/sim.)
        let past = t.new_cid(&mut rng);
        assert_eq!(t.by_cid(&past), None, "slot 2,000 does not exist");
        let key = t.cid_key.expect("drawn");
        let mut cid = [9u8; CID_LEN];
        let masked = 5 ^ cid_mask(key, &cid);
        cid[4..].copy_from_slice(&masked.to_le_bytes());
        t.slots[5].cid = Some(cid);
        assert_eq!(t.by_cid(&cid), None, "slot 5 holds the id but no connection");
        t.slots[5].cid = None;
        assert_eq!(t.by_cid(&cid), None);
    }
}
