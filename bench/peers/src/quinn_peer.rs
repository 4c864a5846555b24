//! quinn: an echo server and the clients of every workload.
//!
//! Unreliable messages are QUIC datagrams (RFC 9221); reliable-ordered ones
//! go on one bidirectional stream per client, each framed as
//! `length (u32 LE) ‖ bytes`. The server presents a self-signed certificate
//! (`peers cert`) that the clients pin: it is their only trust root. quinn's
//! default transport configuration is used unchanged; the server's socket
//! gets the same 4 MiB receive buffer as ours. Both sides run on a
//! single-threaded tokio runtime, as our server and `loadgen` run on one
//! thread each.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, RecvStream, SendStream, ServerConfig, TokioRuntime};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, timeout};

use crate::common::{
    Clock, CpuSample, Delivery, LoadArgs, Measured, Phases, STAMP, Tally, Track, Window, cpu_sample, report,
    report_bulk, report_connect, report_echo, secs,
};

/// The name in the certificate, and the one the clients expect.
const SERVER_NAME: &str = "localhost";
/// The largest message the clients send.
const MAX_MESSAGE: usize = 1 << 20;

/// Writes a self-signed certificate for `localhost` and its key to
/// `dir/cert.der` and `dir/key.der`.
pub fn write_cert(dir: &Path) -> Result<(), String> {
    let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("cert.der"), ck.cert.der()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("key.der"), ck.signing_key.serialize_der()).map_err(|e| e.to_string())?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A client configuration that trusts only the certificate in `cert` (DER).
fn client_config(cert: &Path) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(read(cert)?)).map_err(|e| format!("{}: {e}", cert.display()))?;
    ClientConfig::with_root_certificates(Arc::new(roots)).map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

fn client_endpoint(server: SocketAddr, config: &ClientConfig) -> Result<Endpoint, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut endpoint = Endpoint::client(local).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config.clone());
    Ok(endpoint)
}

async fn connect(server: SocketAddr, config: &ClientConfig) -> Result<(Endpoint, Connection), String> {
    let endpoint = client_endpoint(server, config)?;
    let connecting = endpoint.connect(server, SERVER_NAME).map_err(|e| e.to_string())?;
    let conn = connecting.await.map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}

/// The echo server's arguments.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:5000
    #[arg(long, value_name = "ADDR")]
    bind: SocketAddr,
    /// Directory with cert.der and key.der (from `peers cert`)
    #[arg(long, value_name = "DIR")]
    cert: PathBuf,
    /// Stop after this many seconds (default: run until killed)
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
}

/// Runs the echo server: datagrams come back as datagrams, stream frames on their stream.
pub fn serve(args: &ServeArgs) -> Result<(), String> {
    let cert = CertificateDer::from(read(&args.cert.join("cert.der"))?);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read(&args.cert.join("key.der"))?));
    let config = ServerConfig::with_single_cert(vec![cert], key).map_err(|e| e.to_string())?;
    let socket = UdpSocket::bind(args.bind).map_err(|e| format!("bind {}: {e}", args.bind))?;
    mpgameserver_drivers::udp::grow_recv_buffer(&socket, 4 << 20).map_err(|e| e.to_string())?;
    let duration = args.duration.map(secs).transpose()?;
    runtime()?.block_on(async move {
        let endpoint = Endpoint::new(EndpointConfig::default(), Some(config), socket, Arc::new(TokioRuntime))
            .map_err(|e| e.to_string())?;
        println!("quinn echo server on {}", endpoint.local_addr().map_err(|e| e.to_string())?);
        let accept = async {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve_connection(conn).await;
                    }
                });
            }
        };
        match duration {
            Some(d) => {
                let _ = timeout(d, accept).await;
            }
            None => accept.await,
        }
        endpoint.close(0u32.into(), b"server stopping");
        println!("stopped");
        Ok(())
    })
}

async fn serve_connection(conn: Connection) {
    loop {
        tokio::select! {
            datagram = conn.read_datagram() => match datagram {
                Ok(d) => { let _ = conn.send_datagram(d); }
                Err(_) => return,
            },
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => { tokio::spawn(echo_stream(send, recv)); }
                Err(_) => return,
            },
        }
    }
}

/// Echoes every complete frame of `recv` on `send`.
async fn echo_stream(mut send: SendStream, mut recv: RecvStream) {
    let mut frames = Frames::default();
    let mut chunk = vec![0u8; 64 << 10];
    while let Ok(Some(n)) = recv.read(&mut chunk).await {
        frames.extend(&chunk[..n]);
        while let Some(frame) = frames.next_frame(true) {
            if send.write_all(frame).await.is_err() {
                return;
            }
        }
        frames.compact();
    }
    let _ = send.finish();
}

/// Length-prefixed frames arriving in pieces.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    at: usize,
}

impl Frames {
    fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame: with its length prefix (`whole`) or without.
    fn next_frame(&mut self, whole: bool) -> Option<&[u8]> {
        let rest = &self.buf[self.at..];
        // `get(..4)` returned four bytes, so the conversion cannot fail.
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            return None;
        }
        let start = if whole { self.at } else { self.at + 4 };
        self.at += 4 + len;
        Some(&self.buf[start..self.at])
    }

    /// Drops the frames already handed out.
    fn compact(&mut self) {
        self.buf.drain(..self.at);
        self.at = 0;
    }
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + msg.len());
    f.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    f.extend_from_slice(msg);
    f
}

/// Workloads 1 and 2: `examples/loadgen`'s pattern with quinn clients (one endpoint, so one socket, each).
pub fn load(args: &LoadArgs, cert: &Path) -> Result<(), String> {
    let m = measure(args, cert)?;
    report(args, m.tally, m.connect_start, m.cpu, 1)
}

fn measure(args: &LoadArgs, cert: &Path) -> Result<Measured, String> {
    let period = args.validate(MAX_MESSAGE)?;
    let config = client_config(cert)?;
    runtime()?.block_on(async {
        let clock = Clock::new();
        let connect_start = clock.us();
        let (conns, mut tally) = connect_many(args, &config, clock).await;
        let phases = Phases::new(args, clock.us());
        let cpu = tokio::spawn({
            let pid = args.server_pid;
            async move {
                sleep_until(clock.at(phases.window.start).into()).await;
                let a: CpuSample = cpu_sample(pid, &clock);
                sleep_until(clock.at(phases.window.end).into()).await;
                [a, cpu_sample(pid, &clock)]
            }
        });
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|(id, endpoint, conn)| {
                let args = args.clone();
                tokio::spawn(async move {
                    let t = run_client(&args, id, &conn, period, phases, clock).await;
                    conn.close(0u32.into(), b"done");
                    endpoint.wait_idle().await;
                    t
                })
            })
            .collect();
        for task in tasks {
            if let Ok(t) = task.await {
                tally.merge(t);
            }
        }
        let cpu = cpu.await.ok();
        Ok(Measured { tally, connect_start, cpu })
    })
}

/// Connects `args.clients` clients, `args.concurrency` at a time.
async fn connect_many(
    args: &LoadArgs,
    config: &ClientConfig,
    clock: Clock,
) -> (Vec<(u32, Endpoint, Connection)>, Tally) {
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1) as usize));
    let limit = Duration::from_secs_f64(args.connect_timeout);
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| {
            let (permits, config, server) = (permits.clone(), config.clone(), args.server);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let started = clock.us();
                let result = match timeout(limit, connect(server, &config)).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_string()),
                };
                (id, started, clock.us(), result)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut conns = Vec::new();
    for task in tasks {
        match task.await {
            Ok((id, started, done, Ok((endpoint, conn)))) => {
                tally.on_connected(started, done);
                conns.push((id, endpoint, conn));
            }
            Ok((_, _, _, Err(e))) => {
                if tally.failed == 0 {
                    eprintln!("quinn load: a handshake failed: {e}");
                }
                tally.failed += 1;
            }
            Err(_) => tally.failed += 1,
        }
    }
    (conns, tally)
}

/// One client through the phases after its handshake.
async fn run_client(
    args: &LoadArgs,
    id: u32,
    conn: &Connection,
    period: Duration,
    phases: Phases,
    clock: Clock,
) -> Tally {
    let (mut tally, mut track) = (Tally::default(), Track::new(id));
    let mut msg = vec![0; args.size];
    let window = phases.window;
    let period_us = period.as_micros() as u64;
    let mut next = phases.first_send(period, id, args.clients);
    let mut stream = match args.delivery {
        Delivery::Unreliable => None,
        Delivery::Reliable => match conn.open_bi().await {
            Ok(s) => Some(s),
            Err(_) => {
                tally.disconnected += 1;
                return tally;
            }
        },
    };
    let mut frames = Frames::default();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let sending = next < window.end;
        if !sending && (tally.echoed >= tally.sent || clock.us() >= phases.drain_end) {
            break;
        }
        let wake = if sending { next } else { phases.drain_end };
        tokio::select! {
            _ = sleep_until(clock.at(wake).into()) => {
                if !sending {
                    continue;
                }
                let now = clock.us();
                track.next_message(&mut msg, now, window, &mut tally);
                let sent = match &mut stream {
                    None => conn.send_datagram(Bytes::copy_from_slice(&msg)).is_ok(),
                    Some((send, _)) => send.write_all(&frame(&msg)).await.is_ok(),
                };
                if !sent {
                    tally.send_errors += 1;
                }
                next += period_us;
                if next <= now {
                    next = now + period_us;
                }
            }
            datagram = conn.read_datagram(), if stream.is_none() => match datagram {
                Ok(d) => track.on_echo(&d, clock.us(), window, &mut tally),
                Err(_) => {
                    if clock.us() < window.end {
                        tally.disconnected += 1;
                    }
                    break;
                }
            },
            read = async { stream.as_mut().expect("guarded: reliable").1.read(&mut chunk).await }, if stream.is_some() => match read {
                Ok(Some(n)) => {
                    let now = clock.us();
                    frames.extend(&chunk[..n]);
                    while let Some(echo) = frames.next_frame(false) {
                        track.on_echo(echo, now, window, &mut tally);
                    }
                    frames.compact();
                }
                _ => {
                    if clock.us() < window.end {
                        tally.disconnected += 1;
                    }
                    break;
                }
            },
        }
    }
    tally
}

/// Workload 5: `clients` handshakes, `concurrency` at a time.
pub fn connect_run(args: &LoadArgs, cert: &Path) -> Result<(), String> {
    args.validate(MAX_MESSAGE)?;
    let config = client_config(cert)?;
    runtime()?.block_on(async {
        let clock = Clock::new();
        let start = clock.us();
        let (conns, mut tally) = connect_many(args, &config, clock).await;
        let elapsed = tally.last_connected.unwrap_or(start).saturating_sub(start) as f64 / 1e6;
        // Close every connection, then wait for them all together (each
        // lingers three probe timeouts).
        let closing: Vec<_> = conns
            .into_iter()
            .map(|(_, endpoint, conn)| {
                conn.close(0u32.into(), b"done");
                tokio::spawn(async move { endpoint.wait_idle().await })
            })
            .collect();
        for c in closing {
            let _ = c.await;
        }
        report_connect(args.clients, args.concurrency, &mut tally, elapsed);
        Ok(())
    })
}

/// Workload 3: one connection, `count` messages of `size` bytes, one at a time on one stream.
pub fn echo(server: SocketAddr, cert: &Path, size: usize, count: u32, limit: Duration) -> Result<(), String> {
    if !(STAMP..=MAX_MESSAGE).contains(&size) {
        return Err(format!("--size must be in {STAMP}..={MAX_MESSAGE}"));
    }
    let config = client_config(cert)?;
    runtime()?.block_on(async {
        let (endpoint, conn) = timeout(limit, connect(server, &config)).await.map_err(|_| "connect timed out")??;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let clock = Clock::new();
        let everything = Window { start: 0, end: u64::MAX };
        let (mut track, mut tally) = (Track::new(0), Tally::default());
        let (mut msg, mut chunk, mut frames) = (vec![0; size], vec![0u8; 64 << 10], Frames::default());
        for _ in 0..count {
            track.next_message(&mut msg, clock.us(), everything, &mut tally);
            send.write_all(&frame(&msg)).await.map_err(|e| e.to_string())?;
            let wait = async {
                loop {
                    match recv.read(&mut chunk).await {
                        Ok(Some(n)) => frames.extend(&chunk[..n]),
                        _ => return Err("the stream ended".to_string()),
                    }
                    if let Some(echo) = frames.next_frame(false) {
                        track.on_echo(echo, clock.us(), everything, &mut tally);
                        frames.compact();
                        return Ok(());
                    }
                }
            };
            if timeout(limit, wait).await.is_err() {
                break;
            }
        }
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        report_echo(&mut tally.rtts_us, count, size);
        if tally.corrupt > 0 {
            return Err(format!("{} echoes did not match what was sent", tally.corrupt));
        }
        Ok(())
    })
}

/// Workload 4: one connection, frames of `size` bytes on one stream,
/// `window` in flight, for `seconds`; echoed bytes per second.
pub fn bulk(server: SocketAddr, cert: &Path, size: usize, window: u32, seconds: f64) -> Result<(), String> {
    if !(STAMP..=MAX_MESSAGE).contains(&size) {
        return Err(format!("--size must be in {STAMP}..={MAX_MESSAGE}"));
    }
    let config = client_config(cert)?;
    runtime()?.block_on(async {
        let (endpoint, conn) =
            timeout(Duration::from_secs(10), connect(server, &config)).await.map_err(|_| "connect timed out")??;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let clock = Clock::new();
        let start = clock.us();
        let end = start + (seconds * 1e6) as u64;
        let counted = Window { start, end };
        let credit = Arc::new(Semaphore::new(window.max(1) as usize));
        // The writer: one frame per credit; the reader gives a credit back per echo.
        let writer = tokio::spawn({
            let credit = credit.clone();
            async move {
                let (mut track, mut tally, mut msg) = (Track::new(0), Tally::default(), vec![0; size]);
                while clock.us() < end {
                    let Ok(permit) = credit.acquire().await else { break };
                    permit.forget();
                    track.next_message(&mut msg, clock.us(), counted, &mut tally);
                    if send.write_all(&frame(&msg)).await.is_err() {
                        break;
                    }
                }
                track
            }
        });
        // The reader's own track: on one stream the k-th echo is message k,
        // so message k has been sent when it arrives.
        let (mut tally, mut chunk, mut frames) = (Tally::default(), vec![0u8; 64 << 10], Frames::default());
        let mut reader_track = Track::new(0);
        let mut echoed_bytes = 0u64;
        while clock.us() < end {
            let left = Duration::from_micros(end.saturating_sub(clock.us()));
            let Ok(read) = timeout(left, recv.read(&mut chunk)).await else { break };
            let Ok(Some(n)) = read else { break };
            frames.extend(&chunk[..n]);
            let now = clock.us();
            while let Some(echo) = frames.next_frame(false) {
                let before = tally.echoed;
                reader_track.expect_next();
                reader_track.on_echo(echo, now, counted, &mut tally);
                if tally.echoed > before && now < end {
                    echoed_bytes += echo.len() as u64;
                }
                credit.add_permits(1);
            }
            frames.compact();
        }
        let elapsed = (clock.us() - start) as f64 / 1e6;
        credit.close();
        conn.close(0u32.into(), b"done");
        let _ = writer.await;
        endpoint.wait_idle().await;
        report_bulk(echoed_bytes, elapsed, size, tally.corrupt);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arriving_in_pieces_come_out_whole_and_in_order() {
        let mut frames = Frames::default();
        let wire: Vec<u8> = [frame(b"one"), frame(b""), frame(&[7; 300])].concat();
        let mut out = Vec::new();
        for piece in wire.chunks(5) {
            frames.extend(piece);
            while let Some(f) = frames.next_frame(false) {
                out.push(f.to_vec());
            }
            frames.compact();
        }
        assert_eq!(out, [b"one".to_vec(), Vec::new(), vec![7; 300]]);
        frames.extend(&frame(b"xy")[..5]);
        assert!(frames.next_frame(true).is_none(), "an incomplete frame waits");
        frames.extend(b"y");
        assert_eq!(frames.next_frame(true), Some(&frame(b"xy")[..]));
    }
}

#[cfg(test)]
mod loopback_tests {
    use super::*;
    use crate::common::testing::{check, free_port, small_load};

    #[test]
    fn quinn_echoes_datagrams_and_stream_frames_over_loopback() {
        let dir = std::env::temp_dir().join(format!("peers-quinn-test-{}", std::process::id()));
        write_cert(&dir).expect("write the certificate");
        let bind = free_port();
        let serve_args = ServeArgs { bind, cert: dir.clone(), duration: Some(5.0) };
        let server = std::thread::spawn(move || serve(&serve_args));
        std::thread::sleep(Duration::from_millis(200));
        for delivery in [Delivery::Unreliable, Delivery::Reliable] {
            check(&measure(&small_load(bind, delivery), &dir.join("cert.der")).expect("a load run"));
        }
        server.join().expect("the server thread").expect("the server");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_client_pinning_another_certificate_does_not_connect() {
        let dir = std::env::temp_dir().join(format!("peers-quinn-pin-{}", std::process::id()));
        write_cert(&dir.join("server")).expect("write the server's certificate");
        write_cert(&dir.join("other")).expect("write another certificate");
        let bind = free_port();
        let serve_args = ServeArgs { bind, cert: dir.join("server"), duration: Some(2.5) };
        let server = std::thread::spawn(move || serve(&serve_args));
        std::thread::sleep(Duration::from_millis(200));
        let mut args = small_load(bind, Delivery::Unreliable);
        args.connect_timeout = 1.0;
        let m = measure(&args, &dir.join("other").join("cert.der")).expect("a load run");
        assert_eq!((m.tally.connected, m.tally.failed), (0, 3));
        server.join().expect("the server thread").expect("the server");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
