//! The connection table: slots addressed by generation-checked
//! [`ConnectionId`]s, the free list, and MPGS/1's route from a peer's
//! address to its slot. The one place that turns an id into a connection.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::event::ConnectionId;
use crate::mpgs2::CID_LEN;
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
    /// A server's MPGS/2 routes: the connection id clients write on short
    /// packets to its slot.
    by_cid: BTreeMap<[u8; CID_LEN], u32>,
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

    /// Puts `conn`, made for [`Table::vacant`]'s id, in its slot and routes
    /// connection id `cid` to it (a server's MPGS/2 connection).
    pub(super) fn insert_cid(&mut self, cid: [u8; CID_LEN], conn: Connection) -> ConnectionId {
        let id = self.place(conn);
        self.by_cid.insert(cid, id.index);
        id
    }

    /// The connection routed from connection id `cid` (MPGS/2 at a server).
    #[inline]
    pub(super) fn by_cid(&self, cid: &[u8; CID_LEN]) -> Option<ConnectionId> {
        let &index = self.by_cid.get(cid)?;
        Some(ConnectionId { index, generation: self.slots[index as usize].generation })
    }

    /// Whether connection id `cid` is taken.
    pub(super) fn cid_taken(&self, cid: &[u8; CID_LEN]) -> bool {
        self.by_cid.contains_key(cid)
    }

    fn place(&mut self, conn: Connection) -> ConnectionId {
        let index = match self.free.pop_front() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.conn = Some(conn);
                slot.sched = Sched::default();
                i
            }
            None => {
                self.slots.push(Slot { generation: 0, conn: Some(conn), sched: Sched::default() });
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

    /// Routes from addresses and from connection ids.
    pub(super) fn routes(&self) -> usize {
        self.by_addr.len() + self.by_cid.len()
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
        if let Some(cid) = conn.as_ref().and_then(Connection::v2).and_then(|c| c.cid())
            && self.by_cid.get(&cid) == Some(&id.index)
        {
            self.by_cid.remove(&cid);
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
