//! Links, partitions and scripted surgery, and what a link does to each
//! datagram on its way: loss, delay, duplication, corruption, capture.

#[allow(clippy::wildcard_imports, reason = "one type split over files shares its imports")]
use super::*;

pub(super) type CaptureFilter = Box<dyn FnMut(&Datagram) -> bool>;

/// A datagram in flight, ordered by arrival time, then by scheduling order.
pub(super) struct InFlight {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) to: u32,
    pub(super) id: u64,
    pub(super) from: SocketAddr,
    pub(super) bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What a link decided for a datagram.
pub(super) enum Fate {
    Dropped(DropCause),
    Held,
    Pass(crate::link::Passage),
}

impl Sim {
    // ----- links ---------------------------------------------------------

    /// The link from node `from` to node `to`, created with the default
    /// settings and its own random stream on first use.
    pub(super) fn link_mut(&mut self, from: u32, to: u32) -> &mut Link {
        let (seed, cfg) = (self.seed, &self.default_link);
        self.links
            .entry((from, to))
            .or_insert_with(|| Link::new(cfg.clone(), false, mix(&[seed, u64::from(from), u64::from(to), 0x11CC])))
    }

    /// Sets the settings of every link not set with [`Sim::set_link`] or
    /// [`Sim::set_path`] (those set later included).
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        for link in self.links.values_mut().filter(|l| !l.custom) {
            link.cfg = cfg.clone();
        }
        self.default_link = cfg;
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: NodeId, to: NodeId, cfg: LinkConfig) {
        let link = self.link_mut(from.0, to.0);
        link.cfg = cfg;
        link.custom = true;
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_path(&mut self, a: NodeId, b: NodeId, cfg: LinkConfig) {
        self.set_link(a, b, cfg.clone());
        self.set_link(b, a, cfg);
    }

    /// The settings of the link from `from` to `to`.
    pub fn link_config(&self, from: NodeId, to: NodeId) -> &LinkConfig {
        self.links.get(&(from.0, to.0)).map_or(&self.default_link, |l| &l.cfg)
    }

    /// Cuts every path between a node of `a` and a node of `b`, both ways.
    /// Datagrams sent across the cut are dropped; those already in flight
    /// still arrive.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.partitions.insert((x.0, y.0));
                self.partitions.insert((y.0, x.0));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn partition_one_way(&mut self, from: NodeId, to: NodeId) {
        self.partitions.insert((from.0, to.0));
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Heals the partition between `a` and `b`, both ways.
    pub fn heal_between(&mut self, a: NodeId, b: NodeId) {
        self.partitions.remove(&(a.0, b.0));
        self.partitions.remove(&(b.0, a.0));
    }

    /// Whether the link from `from` to `to` is cut.
    pub fn is_partitioned(&self, from: NodeId, to: NodeId) -> bool {
        self.partitions.contains(&(from.0, to.0))
    }

    // ----- surgery -------------------------------------------------------

    /// Drops the next `n` datagrams sent from `from` to `to` (added to any
    /// already scheduled).
    pub fn drop_next(&mut self, from: NodeId, to: NodeId, n: u64) {
        self.link_mut(from.0, to.0).drop_next += n;
    }

    /// Holds every datagram sent from `from` to `to` until
    /// [`release`](Sim::release).
    pub fn hold(&mut self, from: NodeId, to: NodeId) {
        let link = self.link_mut(from.0, to.0);
        if link.held.is_none() {
            link.held = Some(Default::default());
        }
    }

    /// Releases a held link: the held datagrams arrive in order after the
    /// link's latency (no loss or other impairment), and new ones pass
    /// normally. Returns how many were held.
    pub fn release(&mut self, from: NodeId, to: NodeId) -> usize {
        let now = self.now;
        let from_addr = self.addr(from);
        let to_addr = self.addr(to);
        let link = self.link_mut(from.0, to.0);
        let Some(held) = link.held.take() else {
            return 0;
        };
        let arrivals: Vec<(Instant, u64, Vec<u8>)> =
            held.into_iter().map(|(id, bytes)| (link.release_arrival(now), id, bytes)).collect();
        let n = arrivals.len();
        for (at, id, bytes) in arrivals {
            self.record(id, TraceKind::Release, from_addr, to_addr, &bytes, false);
            self.stats.released += 1;
            self.schedule(at, to.0, id, from_addr, bytes);
        }
        n
    }

    /// Puts raw bytes on the network from any address (a spoofer, a
    /// stranger, garbage) to `to`, arriving after `delay`. No link applies.
    /// Returns the datagram's trace id.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, delay: Duration) -> u64 {
        self.stats.injected += 1;
        self.put(from, to, bytes, delay, TraceKind::Inject)
    }

    /// Puts a captured datagram on the network again, from its original
    /// source to its original destination, arriving after `delay`. Returns
    /// the copy's trace id.
    pub fn replay(&mut self, d: &Datagram, delay: Duration) -> u64 {
        self.stats.replayed += 1;
        self.put(d.from, d.to, d.bytes.clone(), delay, TraceKind::Replay)
    }

    pub(super) fn put(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        delay: Duration,
        kind: TraceKind,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.record(id, kind, from, to, &bytes, true);
        match self.node_at(to) {
            Some(node) => self.schedule(self.now + delay, node.0, id, from, bytes),
            None => self.drop_dgram(id, DropCause::NoRoute, from, to, &bytes),
        }
        id
    }

    /// Keeps a copy of every datagram endpoints send from now on for which
    /// `filter` returns true (see [`Sim::captured`], [`Sim::replay`]).
    /// Replaces any earlier filter.
    pub fn capture(&mut self, filter: impl FnMut(&Datagram) -> bool + 'static) {
        self.capture = Some(Box::new(filter));
    }

    /// Stops capturing (what was captured stays).
    pub fn stop_capture(&mut self) {
        self.capture = None;
    }

    /// The datagrams captured so far, in send order.
    pub fn captured(&self) -> &[Datagram] {
        &self.captured
    }

    /// Takes the captured datagrams, leaving none.
    pub fn take_captured(&mut self) -> Vec<Datagram> {
        std::mem::take(&mut self.captured)
    }

    pub(super) fn record(
        &mut self,
        id: u64,
        kind: TraceKind,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
        hash: bool,
    ) {
        let entry = TraceEntry { at: self.now, id, kind, from, to, len: bytes.len(), msg_type: msg_type_of(bytes) };
        self.trace.record(entry, hash.then_some(bytes));
    }

    pub(super) fn drop_dgram(&mut self, id: u64, cause: DropCause, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.stats.dropped[cause as usize] += 1;
        self.record(id, TraceKind::Drop(cause), from, to, bytes, false);
    }

    pub(super) fn schedule(&mut self, at: Instant, to: u32, id: u64, from: SocketAddr, bytes: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Reverse(InFlight { at, seq, to, id, from, bytes }));
    }

    /// Puts a datagram from node `from` on the link to `to`.
    pub(super) fn route(&mut self, from: u32, to: SocketAddr, mut bytes: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let from_addr = self.nodes[from as usize].addr;
        self.stats.datagrams_sent += 1;
        self.record(id, TraceKind::Send, from_addr, to, &bytes, true);
        if let Some(filter) = self.capture.as_mut() {
            let d = Datagram { id, from: from_addr, to, bytes, sent_at: self.now };
            if filter(&d) {
                self.captured.push(d.clone());
            }
            bytes = d.bytes;
        }
        let Some(dest) = self.node_at(to) else {
            return self.drop_dgram(id, DropCause::NoRoute, from_addr, to, &bytes);
        };
        let now = self.now;
        let partitioned = self.partitions.contains(&(from, dest.0));
        let link = self.link_mut(from, dest.0);
        let fate = if partitioned {
            Fate::Dropped(DropCause::Partition)
        } else if link.drop_next > 0 {
            link.drop_next -= 1;
            Fate::Dropped(DropCause::Scripted)
        } else if link.too_large(bytes.len()) {
            Fate::Dropped(DropCause::Mtu)
        } else if link.held.is_some() {
            Fate::Held
        } else if link.lose() {
            Fate::Dropped(DropCause::Loss)
        } else {
            match link.pass(now, bytes.len()) {
                Some(p) => Fate::Pass(p),
                None => Fate::Dropped(DropCause::QueueFull),
            }
        };
        match fate {
            Fate::Dropped(cause) => self.drop_dgram(id, cause, from_addr, to, &bytes),
            Fate::Held => {
                self.stats.held += 1;
                self.record(id, TraceKind::Hold, from_addr, to, &bytes, false);
                if let Some(held) = self.link_mut(from, dest.0).held.as_mut() {
                    held.push_back((id, bytes));
                }
            }
            Fate::Pass(p) => {
                if let Some((at, corrupt)) = p.duplicate {
                    let mut copy = bytes.clone();
                    self.stats.duplicated += 1;
                    self.record(id, TraceKind::Duplicate, from_addr, to, &copy, false);
                    if corrupt {
                        self.corrupt(from, dest.0, id, to, &mut copy);
                    }
                    self.schedule(at, dest.0, id, from_addr, copy);
                }
                if p.corrupt {
                    self.corrupt(from, dest.0, id, to, &mut bytes);
                }
                self.schedule(p.arrive, dest.0, id, from_addr, bytes);
            }
        }
    }

    pub(super) fn corrupt(&mut self, from: u32, to: u32, id: u64, to_addr: SocketAddr, bytes: &mut [u8]) {
        let bits = self.link_mut(from, to).flip_bits(bytes);
        if bits > 0 {
            self.stats.corrupted += 1;
            let from_addr = self.nodes[from as usize].addr;
            self.record(id, TraceKind::Corrupt { bits }, from_addr, to_addr, bytes, true);
        }
    }

    pub(super) fn deliver(&mut self, mut d: InFlight) {
        self.count_action();
        let to_addr = self.nodes[d.to as usize].addr;
        self.record(d.id, TraceKind::Deliver, d.from, to_addr, &d.bytes, false);
        self.stats.datagrams_delivered += 1;
        let now = self.now;
        self.nodes[d.to as usize].ep.handle_datagram(now, d.from, &mut d.bytes);
        self.flush(d.to);
    }
}
