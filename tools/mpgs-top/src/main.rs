//! `mpgs-top`: a live terminal dashboard for a running mpgameserver.
//!
//! It reads the JSON view of the server's metrics endpoint
//! (`serve_metrics`, or `echo_server --metrics ADDR`) once a second and
//! shows the endpoint's totals, the datagrams dropped by reason, and a
//! table of connections with sparklines of their RTT and rates.
//!
//! ```sh
//! cargo run --release -p mpgs-top --bin mpgs-top -- --url http://127.0.0.1:9100
//! ```
//!
//! Keys: `s` next sort column, `r` reverse the order, `1`–`7` sort by
//! a column, `/` filter by address (Enter to apply, Esc to clear), arrows,
//! Page Up/Down and Home to scroll the table, `q` or Ctrl-C quit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use mpgameserver_drivers::metrics::{ConnectionInfo, Snapshot};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::{DefaultTerminal, Frame};

/// Watch a running mpgameserver through its metrics endpoint.
#[derive(Parser, Debug)]
#[command(name = "mpgs-top")]
struct Args {
    /// The metrics endpoint (what `serve_metrics` or `--metrics` serves)
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9100")]
    url: String,
    /// Seconds between refreshes
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    interval: f64,
}

/// Samples kept per sparkline.
const HISTORY: usize = 60;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let interval = match Duration::try_from_secs_f64(args.interval) {
        Ok(d) if d >= Duration::from_millis(100) => d,
        _ => {
            eprintln!("mpgs-top: --interval must be at least 0.1 seconds");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = format!("{}/metrics.json", args.url.trim_end_matches('/'));
    let updates = spawn_fetcher(url.clone(), interval);
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, App::new(url), &updates);
    ratatui::restore();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpgs-top: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Fetches the snapshot every `interval` on its own thread, so that the
/// keyboard stays responsive while a request waits.
fn spawn_fetcher(url: String, interval: Duration) -> mpsc::Receiver<Result<Snapshot, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(3))).build().into();
        loop {
            let result = agent
                .get(&url)
                .call()
                .map_err(|e| e.to_string())
                .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()))
                .and_then(|body| {
                    serde_json::from_str::<Snapshot>(&body).map_err(|e| format!("not a metrics snapshot: {e}"))
                });
            if tx.send(result).is_err() {
                return; // the dashboard has quit
            }
            std::thread::sleep(interval);
        }
    });
    rx
}

fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    updates: &mpsc::Receiver<Result<Snapshot, String>>,
) -> std::io::Result<()> {
    loop {
        while let Ok(update) = updates.try_recv() {
            app.update(update);
        }
        terminal.draw(|frame| app.draw(frame))?;
        if event::poll(Duration::from_millis(100))?
            && let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
            && !app.key(key.code, key.modifiers)
        {
            return Ok(());
        }
    }
}

/// Columns the table sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Address,
    Worker,
    Rtt,
    Loss,
    RateIn,
    RateOut,
    Queued,
}

impl SortBy {
    const ALL: [SortBy; 7] =
        [SortBy::Address, SortBy::Worker, SortBy::Rtt, SortBy::Loss, SortBy::RateIn, SortBy::RateOut, SortBy::Queued];

    fn name(self) -> &'static str {
        match self {
            SortBy::Address => "address",
            SortBy::Worker => "worker",
            SortBy::Rtt => "rtt",
            SortBy::Loss => "loss",
            SortBy::RateIn => "in B/s",
            SortBy::RateOut => "out B/s",
            SortBy::Queued => "queued",
        }
    }

    fn key(self, c: &ConnectionInfo) -> f64 {
        match self {
            SortBy::Address => 0.0,
            SortBy::Worker => f64::from(c.worker),
            SortBy::Rtt => c.srtt_ms.unwrap_or(f64::MAX),
            SortBy::Loss => c.loss,
            SortBy::RateIn => c.recv_bytes_per_s,
            SortBy::RateOut => c.sent_bytes_per_s,
            SortBy::Queued => c.queued_bytes as f64,
        }
    }
}

/// One connection's recent history, for its sparklines.
#[derive(Debug, Default)]
struct Trend {
    rtt_ms: VecDeque<f64>,
    rate: VecDeque<f64>,
}

/// The dashboard's state.
struct App {
    url: String,
    last: Option<Snapshot>,
    /// Previous totals, for the endpoint-wide rates.
    previous: Option<Snapshot>,
    error: Option<String>,
    trends: BTreeMap<String, Trend>,
    rx_rate: VecDeque<u64>,
    tx_rate: VecDeque<u64>,
    sort: SortBy,
    descending: bool,
    filter: String,
    editing: bool,
    /// First table row shown.
    scroll: usize,
}

impl App {
    fn new(url: String) -> App {
        App {
            url,
            last: None,
            previous: None,
            error: None,
            trends: BTreeMap::new(),
            rx_rate: VecDeque::new(),
            tx_rate: VecDeque::new(),
            sort: SortBy::RateIn,
            descending: true,
            filter: String::new(),
            editing: false,
            scroll: 0,
        }
    }

    fn update(&mut self, update: Result<Snapshot, String>) {
        let snap = match update {
            Ok(snap) => snap,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.error = None;
        if let Some(prev) = &self.last {
            let dt = (snap.time - prev.time).max(1e-3);
            let per_s = |now: u64, before: u64| (now.saturating_sub(before) as f64 / dt) as u64;
            push(&mut self.rx_rate, per_s(snap.totals.bytes_received, prev.totals.bytes_received));
            push(&mut self.tx_rate, per_s(snap.totals.bytes_sent, prev.totals.bytes_sent));
        }
        let mut seen = BTreeMap::new();
        for c in &snap.connections {
            let key = trend_key(c);
            let mut trend = self.trends.remove(&key).unwrap_or_default();
            push(&mut trend.rtt_ms, c.srtt_ms.unwrap_or(0.0));
            push(&mut trend.rate, c.recv_bytes_per_s + c.sent_bytes_per_s);
            seen.insert(key, trend);
        }
        self.trends = seen;
        self.previous = self.last.replace(snap);
    }

    /// Handles a key; false to quit.
    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> bool {
        if code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL) {
            return false;
        }
        if self.editing {
            match code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(ch) => self.filter.push(ch),
                _ => {}
            }
            return true;
        }
        match code {
            KeyCode::Char('q') => return false,
            KeyCode::Char('s') => {
                let i = SortBy::ALL.iter().position(|&s| s == self.sort).unwrap_or(0);
                self.sort = SortBy::ALL[(i + 1) % SortBy::ALL.len()];
            }
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char(ch @ '1'..='7') => self.sort = SortBy::ALL[usize::from(ch as u8 - b'1')],
            KeyCode::Char('/') => {
                self.editing = true;
                self.scroll = 0;
            }
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Down => self.scroll = self.scroll.saturating_add(1),
            KeyCode::Up => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(20),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(20),
            KeyCode::Home => self.scroll = 0,
            _ => {}
        }
        true
    }

    /// The connections to show, filtered and sorted.
    fn rows(&self) -> Vec<&ConnectionInfo> {
        let Some(snap) = &self.last else { return Vec::new() };
        let mut rows: Vec<&ConnectionInfo> =
            snap.connections.iter().filter(|c| c.address.to_string().contains(self.filter.as_str())).collect();
        let sort = self.sort;
        rows.sort_by(|a, b| {
            let order = if sort == SortBy::Address {
                a.address.cmp(&b.address)
            } else {
                sort.key(a).total_cmp(&sort.key(b)).then(a.address.cmp(&b.address))
            };
            if self.descending { order.reverse() } else { order }
        });
        rows
    }

    fn draw(&self, frame: &mut Frame<'_>) {
        let [header, top, spark, table, footer] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(10),
            Constraint::Length(4),
            Constraint::Min(5),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.draw_header(frame, header);
        let [totals, drops] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(top);
        self.draw_totals(frame, totals);
        self.draw_drops(frame, drops);
        let [rx, tx] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(spark);
        let last = |v: &VecDeque<u64>| v.back().copied().unwrap_or(0);
        let data = |v: &VecDeque<u64>| v.iter().copied().collect::<Vec<u64>>();
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!(" bytes in/s {} ", human(last(&self.rx_rate) as f64))))
                .data(data(&self.rx_rate))
                .style(Style::new().fg(Color::Green)),
            rx,
        );
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!(" bytes out/s {} ", human(last(&self.tx_rate) as f64))))
                .data(data(&self.tx_rate))
                .style(Style::new().fg(Color::Cyan)),
            tx,
        );
        self.draw_table(frame, table);
        let help = if self.editing {
            format!(" filter: {}▏ (Enter apply, Esc clear)", self.filter)
        } else {
            format!(
                " q quit  s/1-7 sort ({}{})  r reverse  / filter  ↑↓ scroll{}",
                self.sort.name(),
                if self.descending { " ↓" } else { " ↑" },
                if self.filter.is_empty() { String::new() } else { format!(" [{}]", self.filter) }
            )
        };
        frame.render_widget(Paragraph::new(help).style(Style::new().add_modifier(Modifier::REVERSED)), footer);
    }

    fn draw_header(&self, frame: &mut Frame<'_>, area: Rect) {
        let status = match (&self.error, &self.last) {
            (Some(e), _) => Line::from(vec![
                Span::styled(" UNREACHABLE ", Style::new().fg(Color::White).bg(Color::Red).bold()),
                Span::raw(format!(
                    " cannot read {}: {e}. Is the server running with metrics on (--metrics ADDR)? Retrying.",
                    self.url
                )),
            ]),
            (None, None) => Line::from(format!(" connecting to {} …", self.url)),
            (None, Some(s)) => {
                let up = (s.time - s.start_time).max(0.0) as u64;
                Line::from(vec![
                    Span::styled(
                        if s.stopped { " STOPPED " } else { " LIVE " },
                        Style::new().fg(Color::Black).bg(if s.stopped { Color::Yellow } else { Color::Green }).bold(),
                    ),
                    Span::raw(format!(
                        " {}  up {}h{:02}m{:02}s  workers {} ({} answered)",
                        self.url,
                        up / 3600,
                        up / 60 % 60,
                        up % 60,
                        s.workers,
                        s.workers_fresh
                    )),
                ])
            }
        };
        frame.render_widget(
            Paragraph::new(status).wrap(Wrap { trim: true }).block(Block::bordered().title(" mpgs-top ")),
            area,
        );
    }

    fn draw_totals(&self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered().title(" endpoint ");
        let Some(s) = &self.last else {
            frame.render_widget(Paragraph::new("no data yet").block(block), area);
            return;
        };
        let t = &s.totals;
        let dt = self.previous.as_ref().map(|p| (s.time - p.time).max(1e-3));
        let rate = |now: u64, before: fn(&Snapshot) -> u64| match (dt, &self.previous) {
            (Some(dt), Some(p)) => format!("{}/s", human(now.saturating_sub(before(p)) as f64 / dt)),
            _ => "-".to_string(),
        };
        let refused = t.hellos_refused_rate + t.hellos_refused_source + t.hellos_refused_full;
        let lines = vec![
            Line::from(format!(
                "connections {}  closing {}  handshaking {}",
                t.connections, t.closing, t.pending_handshakes
            ))
            .bold(),
            Line::from(format!(
                "handshakes {} started, {} completed, {} refused (rate {} source {} full {}), {} evicted",
                t.handshakes_started,
                t.handshakes_completed,
                refused,
                t.hellos_refused_rate,
                t.hellos_refused_source,
                t.hellos_refused_full,
                t.handshakes_evicted
            )),
            Line::from(format!(
                "datagrams in {} ({})  out {} ({})",
                t.datagrams_received,
                rate(t.datagrams_received, |p| p.totals.datagrams_received),
                t.datagrams_sent,
                rate(t.datagrams_sent, |p| p.totals.datagrams_sent)
            )),
            Line::from(format!(
                "messages in {} ({})  delivered {}  lost {}",
                t.messages_received,
                rate(t.messages_received, |p| p.totals.messages_received),
                t.messages_delivered,
                t.messages_lost
            )),
            Line::from(format!(
                "send queues {} messages, {}B  reassembly {}B",
                t.queued_messages,
                human(t.queued_bytes as f64),
                human(t.reassembly_bytes as f64)
            )),
            Line::from(format!(
                "disconnects {}",
                t.disconnects.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
            )),
            Line::from(format!(
                "socket errors recv {} send {} blocked {}",
                t.socket.recv_errors, t.socket.send_errors, t.socket.send_blocked
            )),
        ];
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_drops(&self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered().title(" dropped datagrams ");
        let Some(s) = &self.last else {
            frame.render_widget(block, area);
            return;
        };
        let before = self.previous.as_ref().map(|p| &p.totals.dropped);
        let lines: Vec<Line<'_>> = s
            .totals
            .dropped
            .iter()
            .map(|(reason, &n)| {
                let new = before.and_then(|b| b.get(reason)).map_or(0, |&b| n.saturating_sub(b));
                let style = if new > 0 { Style::new().fg(Color::Red).bold() } else { Style::new() };
                Line::styled(format!("{reason:<13} {n:>10}  +{new}"), style)
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_table(&self, frame: &mut Frame<'_>, area: Rect) {
        let all = self.rows();
        // Rows that fit (borders and header take 3 lines); scrolling stops at the last page.
        let visible = usize::from(area.height.saturating_sub(3)).max(1);
        let first = self.scroll.min(all.len().saturating_sub(visible));
        let rows = &all[first..all.len().min(first + visible)];
        let header = Row::new(
            ["address", "wk", "ver", "rtt ms", "±", "loss", "in B/s", "out B/s", "queued", "rtt trend", "rate trend"]
                .map(|h| Cell::from(h).bold()),
        );
        let spark_width = 16;
        let body: Vec<Row<'_>> = rows
            .iter()
            .map(|c| {
                let trend = self.trends.get(&trend_key(c));
                let spark = |get: fn(&Trend) -> &VecDeque<f64>| {
                    trend.map_or(String::new(), |t| text_spark(get(t), spark_width))
                };
                let loss_style = if c.loss > 0.05 { Style::new().fg(Color::Red) } else { Style::new() };
                Row::new(vec![
                    Cell::from(c.address.to_string()),
                    Cell::from(c.worker.to_string()),
                    Cell::from(c.version.clone()),
                    Cell::from(c.srtt_ms.map_or("-".to_string(), |ms| format!("{ms:.1}"))),
                    Cell::from(format!("{:.1}", c.rttvar_ms)),
                    Cell::from(format!("{:.1}%", c.loss * 100.0)).style(loss_style),
                    Cell::from(human(c.recv_bytes_per_s)),
                    Cell::from(human(c.sent_bytes_per_s)),
                    Cell::from(format!("{}/{}B", c.queued_messages, human(c.queued_bytes as f64))),
                    Cell::from(spark(|t| &t.rtt_ms)).style(Style::new().fg(Color::Yellow)),
                    Cell::from(spark(|t| &t.rate)).style(Style::new().fg(Color::Green)),
                ])
            })
            .collect();
        let total = self.last.as_ref().map_or(0, |s| s.connections.len());
        let mut title = if self.filter.is_empty() {
            format!(" connections: {total} ")
        } else {
            format!(" connections: {} of {total} matching \"{}\" ", all.len(), self.filter)
        };
        if rows.len() < all.len() {
            title += &format!("(rows {}-{}, ↑↓ PgUp PgDn to scroll) ", first + 1, first + rows.len());
        }
        let widths = [
            Constraint::Length(22),
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(spark_width as u16),
            Constraint::Length(spark_width as u16),
        ];
        frame.render_widget(Table::new(body, widths).header(header).block(Block::bordered().title(title)), area);
    }
}

fn trend_key(c: &ConnectionInfo) -> String {
    format!("{}/{}/{}", c.worker, c.id, c.address)
}

fn push<T>(v: &mut VecDeque<T>, x: T) {
    if v.len() == HISTORY {
        v.pop_front();
    }
    v.push_back(x);
}

/// The last `width` values as a one-line sparkline of block characters,
/// scaled to their maximum.
fn text_spark(values: &VecDeque<f64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail: Vec<f64> = values.iter().skip(values.len().saturating_sub(width)).copied().collect();
    let max = tail.iter().copied().fold(0.0, f64::max);
    tail.iter()
        .map(|&v| if max <= 0.0 { BARS[0] } else { BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize] })
        .collect()
}

/// `1234567.0` → `1.2M`.
fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn snapshot(time: f64, rates: &[f64]) -> Snapshot {
        let connections: Vec<serde_json::Value> = rates
            .iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::json!({
                    "worker": i % 2, "id": format!("conn#{i}.0"), "address": format!("127.0.0.1:{}", 40000 + i),
                    "version": "1", "state": "connected", "srtt_ms": 1.0 + i as f64, "rttvar_ms": 0.5,
                    "loss": 0.0, "sent_datagrams_per_s": 60.0, "sent_bytes_per_s": r, "recv_datagrams_per_s": 60.0,
                    "recv_bytes_per_s": r, "queued_messages": 0, "queued_bytes": 0, "messages_sent": 1,
                    "messages_received": 1, "messages_acked": 1, "messages_lost": 0, "messages_retransmitted": 0,
                    "datagrams_sent": 1, "datagrams_received": 1
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "format": 1, "time": time, "start_time": time - 65.0, "workers": 2, "workers_fresh": 2,
            "totals": { "connections": rates.len(), "bytes_received": (time * 1000.0) as u64 },
            "connections": connections
        }))
        .unwrap()
    }

    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|f| app.draw(f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>() + "\n")
            .collect()
    }

    #[test]
    fn shows_connections_sorted_and_filtered() {
        let mut app = App::new("http://127.0.0.1:9100/metrics.json".into());
        app.update(Ok(snapshot(100.0, &[10.0, 300.0, 20.0])));
        app.update(Ok(snapshot(101.0, &[10.0, 300.0, 20.0])));
        let text = screen(&app);
        assert!(text.contains("connections: 3"), "{text}");
        assert!(text.contains("LIVE"), "{text}");
        assert!(text.contains("bytes in/s 1.0k"), "{text}");
        // Sorted by incoming rate, largest first.
        let ports: Vec<u16> = app.rows().iter().map(|c| c.address.port()).collect();
        assert_eq!(ports, [40001, 40002, 40000]);
        assert!(app.key(KeyCode::Char('r'), KeyModifiers::NONE));
        assert_eq!(app.rows()[0].address.port(), 40000);
        app.key(KeyCode::Char('3'), KeyModifiers::NONE); // by rtt, ascending
        assert_eq!(app.rows().iter().map(|c| c.address.port()).collect::<Vec<_>>(), [40000, 40001, 40002]);
        for ch in "/40002".chars() {
            app.key(KeyCode::Char(ch), KeyModifiers::NONE);
        }
        app.key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(app.rows().len(), 1);
        assert!(screen(&app).contains("1 of 3 matching"));
        assert!(!app.key(KeyCode::Char('q'), KeyModifiers::NONE));
    }

    #[test]
    fn scrolls_a_long_table() {
        let mut app = App::new("http://127.0.0.1:9100/metrics.json".into());
        let rates: Vec<f64> = (0..100).map(f64::from).collect();
        app.update(Ok(snapshot(100.0, &rates)));
        let text = screen(&app);
        assert!(text.contains("connections: 100 (rows 1-"), "{text}");
        // Largest rate first: port 40099 at the top.
        assert!(text.contains("127.0.0.1:40099"), "{text}");
        for _ in 0..10 {
            app.key(KeyCode::PageDown, KeyModifiers::NONE);
        }
        let text = screen(&app);
        assert!(text.contains("127.0.0.1:40000") && !text.contains("127.0.0.1:40099"), "{text}");
        app.key(KeyCode::Home, KeyModifiers::NONE);
        assert!(screen(&app).contains("127.0.0.1:40099"));
    }

    #[test]
    fn says_when_the_endpoint_is_unreachable() {
        let mut app = App::new("http://127.0.0.1:1/metrics.json".into());
        app.update(Err("Connection refused".into()));
        let text = screen(&app);
        assert!(text.contains("UNREACHABLE"), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
    }

    #[test]
    fn sparkline_scales_to_its_maximum() {
        let v: VecDeque<f64> = [0.0, 1.0, 2.0, 4.0].into_iter().collect();
        assert_eq!(text_spark(&v, 3), "▃▅█");
        assert_eq!(text_spark(&VecDeque::from([0.0, 0.0]), 8), "▁▁");
        assert_eq!(human(1_500.0), "1.5k");
    }
}
