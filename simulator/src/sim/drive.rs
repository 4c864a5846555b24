//! Running a node's endpoint by the core's run-loop contract: draining its
//! datagrams and events after every input, its timers, and the heap of
//! node timers that decides the next instant.

#[allow(clippy::wildcard_imports, reason = "one type split over files shares its imports")]
use super::*;

impl Sim {
    pub(super) fn flush_dirty(&mut self) {
        while let Some(n) = self.dirty.pop() {
            if self.nodes[n as usize].dirty {
                self.flush(n);
            }
        }
    }

    /// Drains the node's datagrams, then its events (running its handler),
    /// until both are empty; then reschedules its timer.
    pub(super) fn flush(&mut self, n: u32) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.outbox);
        loop {
            let node = &mut self.nodes[n as usize];
            node.dirty = false;
            while let Some(t) = node.ep.poll_transmit(now, &mut self.buf) {
                out.push((t.destination, self.buf[..t.len].to_vec()));
            }
            let mut handled = false;
            while let Some(event) = node.ep.poll_event() {
                if let Some(h) = node.handler.as_mut() {
                    h(&mut node.ep, now, &event);
                    handled = true;
                }
                if node.record {
                    node.events.push(event);
                    node.event_times.push(now);
                }
            }
            for (to, bytes) in out.drain(..) {
                self.route(n, to, bytes);
            }
            if !handled {
                break;
            }
        }
        self.outbox = out;
        self.mark_stale(n);
    }

    /// Calls the node's `handle_timeout` and checks the progress property.
    pub(super) fn fire(&mut self, n: u32) {
        self.count_action();
        self.stats.timeouts += 1;
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        node.timer = None;
        let frame_due = node.frame.is_some() && node.next_frame <= now;
        if let Some(frame) = node.frame {
            while node.next_frame <= now {
                node.next_frame += frame;
            }
        }
        node.ep.handle_timeout(now);
        // Read before draining: the property is about handle_timeout alone.
        let next = node.ep.poll_timeout();
        self.stats.progress_checks += 1;
        if let Some(t) = next.filter(|&t| t <= now) {
            let addr = self.nodes[n as usize].addr;
            self.fail(&format!(
                "progress violated: after handle_timeout({now}) the endpoint of node#{n} ({addr}) returned poll_timeout() = {t}, not None or later"
            ));
        }
        let node = &mut self.nodes[n as usize];
        if frame_due && let Some(hook) = node.on_frame.as_mut() {
            hook(&mut node.ep, now);
        }
        self.flush(n);
    }

    pub(super) fn mark_stale(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.timer_stale {
            node.timer_stale = true;
            self.stale.push(n);
        }
    }

    /// Recomputes the stale timers, in node order.
    pub(super) fn refresh_timers(&mut self) {
        if self.stale.is_empty() {
            return;
        }
        let mut stale = std::mem::take(&mut self.stale);
        stale.sort_unstable();
        for &n in &stale {
            self.schedule_timer(n);
        }
        stale.clear();
        self.stale = stale;
    }

    /// Recomputes the node's timer and queues it if it changed.
    pub(super) fn schedule_timer(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.timer_stale = false;
        let mut t = node.ep.poll_timeout();
        if node.frame.is_some() {
            t = Some(t.map_or(node.next_frame, |t| t.min(node.next_frame)));
        }
        if t != node.timer {
            node.timer = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, n)));
                if self.timers.len() > 4 * self.nodes.len() + 1024 {
                    self.compact_timers();
                }
            }
        }
    }

    /// Drops stale timer entries.
    pub(super) fn compact_timers(&mut self) {
        self.timers = self.nodes.iter().enumerate().filter_map(|(i, n)| Some(Reverse((n.timer?, i as u32)))).collect();
    }

    /// The earliest live timer, discarding stale heap entries.
    pub(super) fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, n))) = self.timers.peek() {
            if self.nodes[n as usize].timer == Some(t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    pub(super) fn pop_due_timer(&mut self) -> Option<u32> {
        let t = self.next_timer()?;
        if t > self.now {
            return None;
        }
        self.timers.pop().map(|Reverse((_, n))| n)
    }
}
