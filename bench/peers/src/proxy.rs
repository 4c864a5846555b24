//! A counting UDP relay for workload 6 (bytes on the wire per message): it
//! forwards each client's datagrams to the server from a socket of its own
//! (so the server still tells the clients apart) and the answers back, and
//! counts datagrams and bytes each way over a window that opens `--skip`
//! seconds after the first datagram (past the handshakes) and lasts
//! `--count` seconds. It sees only UDP payloads, whatever the protocol.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::common::secs;
use crate::poller::Poller;

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Address the clients send to
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The server's address
    #[arg(long, value_name = "ADDR")]
    upstream: SocketAddr,
    /// Seconds after the first datagram before counting starts
    #[arg(long, value_name = "S", default_value_t = 2.5)]
    skip: f64,
    /// Seconds of counting
    #[arg(long, value_name = "S", default_value_t = 4.0)]
    count: f64,
    /// Stop after this many seconds (default: run until killed)
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
}

#[derive(Default, Debug)]
struct Counts {
    up_datagrams: u64,
    up_bytes: u64,
    down_datagrams: u64,
    down_bytes: u64,
}

pub fn run(args: &ProxyArgs) -> Result<(), String> {
    let err = |e: io::Error| e.to_string();
    let front = UdpSocket::bind(args.listen).map_err(|e| format!("bind {}: {e}", args.listen))?;
    front.set_nonblocking(true).map_err(err)?;
    mpgameserver_drivers::udp::grow_recv_buffer(&front, 4 << 20).map_err(err)?;
    let mut poller = Poller::new().map_err(err)?;
    poller.add(&front, 0).map_err(err)?;
    // Per client: its address and its socket towards the server (index i + 1).
    let mut clients: Vec<(SocketAddr, UdpSocket)> = Vec::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let (skip, count) = (secs(args.skip)?, secs(args.count)?);
    let start = Instant::now();
    let end = args.duration.map(secs).transpose()?.map(|d| start + d);
    let mut window: Option<(Instant, Instant)> = None;
    let mut counts = Counts::default();
    let mut reported = false;
    let mut buf = vec![0u8; 65536];
    let mut ready = Vec::with_capacity(1024);
    println!("counting proxy on {} to {}", front.local_addr().map_err(err)?, args.upstream);
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        if let Some((_, close)) = window
            && now >= close
            && !reported
        {
            report(&counts, args.count);
            reported = true;
        }
        ready.clear();
        poller.wait(Duration::from_millis(50), &mut ready).map_err(err)?;
        for &i in &ready {
            loop {
                let now = Instant::now();
                let counting = window.is_some_and(|(open, close)| now >= open && now < close);
                if i == 0 {
                    let (n, from) = match front.recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    window.get_or_insert((now + skip, now + skip + count));
                    let k = match by_addr.get(&from) {
                        Some(&k) => k,
                        None => {
                            let up = UdpSocket::bind((args.listen.ip(), 0)).map_err(err)?;
                            up.connect(args.upstream).map_err(err)?;
                            up.set_nonblocking(true).map_err(err)?;
                            poller.add(&up, clients.len() as u32 + 1).map_err(err)?;
                            clients.push((from, up));
                            by_addr.insert(from, clients.len() - 1);
                            clients.len() - 1
                        }
                    };
                    if counting {
                        counts.up_datagrams += 1;
                        counts.up_bytes += n as u64;
                    }
                    let _ = clients[k].1.send(&buf[..n]);
                } else {
                    let (to, up) = &clients[i as usize - 1];
                    let n = match up.recv(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    if counting {
                        counts.down_datagrams += 1;
                        counts.down_bytes += n as u64;
                    }
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        }
    }
    if !reported {
        report(&counts, args.count);
    }
    Ok(())
}

fn report(c: &Counts, seconds: f64) {
    println!(
        "proxy window_s={seconds:.2} up_datagrams={} up_bytes={} down_datagrams={} down_bytes={}",
        c.up_datagrams, c.up_bytes, c.down_datagrams, c.down_bytes
    );
}
