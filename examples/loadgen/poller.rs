//! Waiting for any of many sockets: epoll on Linux (cost independent of the
//! number of sockets), poll(2) elsewhere.

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use rustix::event::Timespec;

/// The sockets of every client, each registered under its index.
pub struct Poller {
    #[cfg(target_os = "linux")]
    epoll: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    events: Vec<rustix::event::epoll::Event>,
    #[cfg(not(target_os = "linux"))]
    count: usize,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        #[cfg(target_os = "linux")]
        {
            let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?;
            Ok(Poller { epoll, events: Vec::with_capacity(1024) })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(Poller { count: 0 })
        }
    }

    /// Registers `socket` as number `index` (level-triggered: a socket
    /// stays ready while it holds datagrams).
    pub fn add(&mut self, socket: &UdpSocket, index: u32) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use rustix::event::epoll;
            epoll::add(&self.epoll, socket, epoll::EventData::new_u64(index.into()), epoll::EventFlags::IN)?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = socket;
            debug_assert_eq!(self.count, index as usize);
            self.count += 1;
        }
        Ok(())
    }

    /// Waits up to `timeout` and appends the indexes of the readable sockets
    /// to `ready`. `sockets` lists every registered socket in index order
    /// (only the poll(2) fallback reads it).
    pub fn wait<'a>(
        &mut self,
        timeout: Duration,
        sockets: impl Iterator<Item = &'a UdpSocket>,
        ready: &mut Vec<u32>,
    ) -> io::Result<()> {
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        #[cfg(target_os = "linux")]
        {
            let _ = sockets;
            self.events.clear();
            match rustix::event::epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut self.events), Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            ready.extend(self.events.iter().map(|e| e.data.u64() as u32));
        }
        #[cfg(not(target_os = "linux"))]
        {
            use rustix::event::{PollFd, PollFlags};
            let mut fds: Vec<PollFd<'_>> = sockets.map(|s| PollFd::new(s, PollFlags::IN)).collect();
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            ready.extend(fds.iter().enumerate().filter(|(_, f)| !f.revents().is_empty()).map(|(i, _)| i as u32));
        }
        Ok(())
    }
}
