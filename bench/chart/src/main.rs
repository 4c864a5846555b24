//! Draws delivered messages per second versus clients (at 60 Hz) for each
//! server in a CSV written by `bench/compare.sh`, with the offered rate for
//! reference, as an SVG.
//!
//! ```text
//! cargo run --release --manifest-path bench/chart/Cargo.toml -- bench/results/full.csv bench/chart.svg [CAPTION-NOTE]
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use plotters::prelude::*;

const HZ: u32 = 60;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (csv, svg, note) = match args.as_slice() {
        [_, csv, svg] => (csv, svg, None),
        [_, csv, svg, note] => (csv, svg, Some(note)),
        _ => return Err("usage: chart RESULTS.csv OUT.svg [CAPTION-NOTE]".into()),
    };
    let text = std::fs::read_to_string(csv)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty CSV")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (server, clients, hz, rate) = (col("server")?, col("clients")?, col("hz")?, col("msgs_per_s")?);

    // server -> clients -> delivered msg/s, at 60 Hz only.
    let mut series: BTreeMap<String, BTreeMap<u32, f64>> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(hz).and_then(|h| h.parse::<u32>().ok()) != Some(HZ) {
            continue;
        }
        let (Some(n), Some(r)) = (f[clients].parse::<u32>().ok(), f[rate].parse::<f64>().ok()) else { continue };
        series.entry(f[server].to_string()).or_default().insert(n, r.max(1.0));
    }
    if series.is_empty() {
        return Err(format!("no {HZ} Hz rows in {csv}").into());
    }
    let max_clients = series.values().flat_map(|s| s.keys()).copied().max().unwrap_or(2000) as f64;
    let max_rate =
        (max_clients * f64::from(HZ)).max(series.values().flat_map(|s| s.values()).copied().fold(0.0, f64::max));

    let root = SVGBackend::new(svg, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Echo on loopback, 100 B messages at {HZ} Hz per client (2 cores){}",
                note.map_or(String::new(), |n| format!(", {n}"))
            ),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((100f64..max_clients * 1.3).log_scale(), (1_000f64..max_rate * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("delivered messages/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    let offered: Vec<(f64, f64)> = series
        .values()
        .flat_map(|s| s.keys())
        .copied()
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .map(|n| (f64::from(n), f64::from(n * HZ)))
        .collect();
    chart
        .draw_series(LineSeries::new(offered, BLACK.mix(0.4).stroke_width(1)))?
        .label("offered")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));

    let styles = [
        ("ours", "ours (echo_server)", BLUE),
        ("raw", "raw UDP + AES-GCM", GREEN),
        ("ref", "reference 0.2.4 (Python)", RED),
        // bench/peers/run.sh
        ("renet", "renet 2 + renet_netcode", RED),
        ("quinn", "quinn 0.11", GREEN),
    ];
    for (key, label, color) in styles {
        let Some(points) = series.get(key) else { continue };
        let points: Vec<(f64, f64)> = points.iter().map(|(&n, &r)| (f64::from(n), r)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
