//! Waiting for many sockets at once (epoll, Linux), and for one (poll).

use std::io;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, epoll};

/// Sockets registered under an index each, level-triggered.
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<epoll::Event>,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller { epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?, events: Vec::with_capacity(1024) })
    }

    pub fn add(&mut self, socket: &UdpSocket, index: u32) -> io::Result<()> {
        epoll::add(&self.epoll, socket, epoll::EventData::new_u64(index.into()), epoll::EventFlags::IN)?;
        Ok(())
    }

    /// Waits up to `timeout`; appends the indexes of the readable sockets to `ready`.
    pub fn wait(&mut self, timeout: Duration, ready: &mut Vec<u32>) -> io::Result<()> {
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        self.events.clear();
        match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut self.events), Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        ready.extend(self.events.iter().map(|e| e.data.u64() as u32));
        Ok(())
    }
}

/// Waits up to `timeout` for `socket` to become readable; true if it is.
pub fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
