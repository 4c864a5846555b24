//! The counters of a run and what loadgen prints from them: the summary
//! line, and the error of a run where not every client connected. Pure (no
//! sockets, no clock), so `tests/ops` includes this file and runs its tests.

use std::collections::BTreeSet;
use std::net::IpAddr;

use mpgameserver::Instant;

/// Counters of a run.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) connected: u32,
    /// Handshakes that ended without a connection, for any reason.
    pub(crate) failed: u32,
    /// Of `failed`: the server did not answer within the connect timeout
    /// (a server drops a hello it refuses without answering).
    pub(crate) timed_out: u32,
    /// The local addresses of the clients (one: they all share it).
    pub(crate) sources: BTreeSet<IpAddr>,
    pub(crate) first_connected: Option<Instant>,
    pub(crate) last_connected: Option<Instant>,
    /// Messages sent in the measurement window, and echoes of them.
    pub(crate) sent: u64,
    pub(crate) echoed: u64,
    /// Echoes of any message received during the window.
    pub(crate) echoes_in_window: u64,
    pub(crate) duplicates: u64,
    pub(crate) corrupt: u64,
    /// Messages the client endpoint refused (its queue was full).
    pub(crate) refused: u64,
    /// `Lost` events for our messages (Reliable/BestEffort).
    pub(crate) reported_lost: u64,
    pub(crate) disconnected: u64,
    pub(crate) send_errors: u64,
    pub(crate) rtts_us: Vec<u32>,
}

/// The summary line; `t.rtts_us` sorted, `window` in seconds.
pub(crate) fn summary_line(clients: u32, t: &Tally, window: f64) -> String {
    format!(
        "clients={} connected={}/{} sent={} echoed={} lost={} msgs_per_s={:.0} p50_rtt_ms={} p99_rtt_ms={}",
        clients,
        t.connected,
        clients,
        t.sent,
        t.echoed,
        t.sent - t.echoed.min(t.sent),
        t.echoes_in_window as f64 / window,
        quantile_ms(&t.rtts_us, 0.5),
        quantile_ms(&t.rtts_us, 0.99),
    )
}

/// Quantile `q` of sorted round-trip times (µs), in ms; `-` for none.
pub(crate) fn quantile_ms(sorted_us: &[u32], q: f64) -> String {
    match sorted_us.len() {
        0 => "-".to_string(),
        n => format!("{:.2}", f64::from(sorted_us[((n - 1) as f64 * q).round() as usize]) / 1e3),
    }
}

/// The error of a run where fewer than `asked` clients connected (`None`:
/// all did): how many, why if it can tell, and what to do. A server drops a
/// hello it refuses without answering, so a refusal looks like a timeout;
/// when every client shares one address, the likeliest refusal is the
/// server's per-address limits.
pub(crate) fn shortfall(asked: u32, t: &Tally, connect_timeout: f64) -> Option<String> {
    if t.connected >= asked {
        return None;
    }
    let mut why =
        format!("only {} of {} clients connected; the figures above are for those {}", t.connected, asked, t.connected);
    let other_failures = t.failed - t.timed_out.min(t.failed);
    if other_failures > 0 {
        why += &format!(" ({other_failures} handshakes failed for the reason shown above)");
    }
    // Timed out, or still in progress (or not started) at the connect deadline.
    let unanswered = asked - t.connected - other_failures.min(asked - t.connected);
    if unanswered == 0 {
        return Some(why);
    }
    why += &format!(". {unanswered} handshakes got no answer within --connect-timeout ({connect_timeout} s)");
    let limits = mpgameserver::EndpointConfig::default();
    match (t.sources.len(), t.sources.first()) {
        (1, Some(ip)) => {
            why += &format!(
                ": all {asked} clients share the address {ip}, and a server drops the hellos beyond its \
             per-address limits unanswered (by default {} connections, {} handshakes in progress and \
             {} hellos/s, bursts of {}, per address). For a load test, lift them on the server: \
             `echo_server --no-source-limits` (never on a server reachable from the internet); \
             a slow server needs a longer --connect-timeout",
                limits.max_connections_per_ip,
                limits.max_pending_per_ip,
                limits.hello_rate_per_ip.per_second,
                limits.hello_rate_per_ip.burst,
            )
        }
        _ => why += ": check the server's hello rate limits, or allow a longer --connect-timeout",
    }
    Some(why)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn tally(connected: u32, failed: u32, timed_out: u32, sources: &[IpAddr]) -> Tally {
        Tally { connected, failed, timed_out, sources: sources.iter().copied().collect(), ..Tally::default() }
    }

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn the_summary_line_says_how_many_of_the_clients_asked_for_connected() {
        let t = Tally {
            sent: 10,
            echoed: 9,
            echoes_in_window: 20,
            rtts_us: vec![1_000, 2_000, 3_000],
            ..tally(64, 0, 0, &[])
        };
        assert_eq!(
            summary_line(200, &t, 2.0),
            "clients=200 connected=64/200 sent=10 echoed=9 lost=1 msgs_per_s=10 p50_rtt_ms=2.00 p99_rtt_ms=3.00"
        );
        assert_eq!(
            summary_line(5, &tally(0, 5, 5, &[LOOPBACK]), 1.0),
            "clients=5 connected=0/5 sent=0 echoed=0 lost=0 msgs_per_s=0 p50_rtt_ms=- p99_rtt_ms=-"
        );
    }

    #[test]
    fn a_full_house_is_no_shortfall() {
        assert_eq!(shortfall(200, &tally(200, 0, 0, &[LOOPBACK]), 20.0), None);
    }

    #[test]
    fn unanswered_handshakes_from_one_address_point_at_the_per_address_limits() {
        // 64 connected, 100 timed out, 36 still connecting at the deadline.
        let why = shortfall(200, &tally(64, 100, 100, &[LOOPBACK]), 20.0).expect("a shortfall");
        assert!(why.starts_with("only 64 of 200 clients connected"), "{why}");
        assert!(why.contains("136 handshakes got no answer within --connect-timeout (20 s)"), "{why}");
        assert!(why.contains("share the address 127.0.0.1"), "{why}");
        let d = mpgameserver::EndpointConfig::default();
        assert!(why.contains(&format!("{} connections", d.max_connections_per_ip)), "{why}");
        assert!(why.contains("`echo_server --no-source-limits`"), "{why}");
    }

    #[test]
    fn clients_from_several_addresses_get_no_per_address_hint() {
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let why = shortfall(10, &tally(4, 6, 6, &[LOOPBACK, other]), 5.0).expect("a shortfall");
        assert!(why.contains("6 handshakes got no answer"), "{why}");
        assert!(!why.contains("--no-source-limits"), "{why}");
        assert!(why.contains("--connect-timeout"), "{why}");
    }

    #[test]
    fn handshakes_that_failed_otherwise_get_no_limits_hint() {
        // A wrong pinned key: every handshake failed, none timed out.
        let why = shortfall(10, &tally(0, 10, 0, &[LOOPBACK]), 5.0).expect("a shortfall");
        assert_eq!(
            why,
            "only 0 of 10 clients connected; the figures above are for those 0 \
             (10 handshakes failed for the reason shown above)"
        );
    }
}
