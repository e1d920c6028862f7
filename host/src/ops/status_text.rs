//! The status as text, for terminals (`host status`).

use super::row_counts;
use super::status::{GeneratorStatus, Reachability, Status};

/// The status as text, for terminals.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let reach = |r: &Reachability| match (r.ok, &r.error) {
        (Some(true), _) => "ok".to_string(),
        (Some(false), e) => format!("UNREACHABLE: {}", e.as_deref().unwrap_or("")),
        (None, _) => "not checked".to_string(),
    };
    let _ = writeln!(out, "Pipeline {} (host {})", s.pipeline, s.version);
    let state = if !s.host_running {
        "not running"
    } else if s.ready {
        "running, ready"
    } else {
        "running, NOT READY"
    };
    let _ = writeln!(out, "  host: {state}");
    for why in &s.not_ready {
        let _ = writeln!(out, "    - {why}");
    }
    let _ = writeln!(out, "  PostgreSQL: {}", reach(&s.postgres));
    let _ = writeln!(out, "  Kafka: {}", reach(&s.kafka));
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let _ = writeln!(out, "\nSinks");
    let _ = writeln!(
        out,
        "  {:<24} {:<20} {:<24} {:>10} {:>12} {:>10}",
        "SINK", "TOPIC", "TABLE", "ROWS", "DEAD LETTERS", "ROWS/S"
    );
    for k in &s.sinks {
        let rate = k.throughput.last().map_or("-".to_string(), |(_, r)| format!("{r:.0}"));
        let _ = writeln!(
            out,
            "  {:<24} {:<20} {:<24} {:>10} {:>12} {:>10}",
            k.name,
            k.topic,
            k.table,
            match (k.table_rows, k.table_rows_kind) {
                // `~`: PostgreSQL's estimate, the table being large.
                (Some(n), Some(row_counts::Kind::Estimate)) => format!("~{n}"),
                (n, _) => opt(n),
            },
            opt(k.dead_letters),
            rate
        );
        if k.paused {
            let _ = writeln!(
                out,
                "      paused (host sink pause): writing nothing; `host sink resume` goes on"
            );
        }
        for p in &k.partitions {
            let _ = writeln!(
                out,
                "      partition {:<4} stored {:>10}  end {:>10}  lag {:>8}",
                p.partition,
                opt(p.stored),
                opt(p.end),
                opt(p.lag)
            );
        }
    }
    if !s.generators.is_empty() {
        let _ = writeln!(out, "\nGenerators");
        for g in &s.generators {
            let _ = writeln!(out, "  {:<24} topic {:<20} {}", g.name, g.topic, generator_text(g));
        }
    }
    let _ = writeln!(out, "\nPlugins");
    for p in &s.plugins {
        let _ = writeln!(out, "  {:<32} {}", p.name, p.path);
        let loaded = match (&p.world, &p.contract, p.loaded_at_ms) {
            (Some(w), Some(c), Some(at)) => format!("{w}, contract {c}, loaded {}", ago(s.generated_at_ms, at)),
            _ => p.note.clone().unwrap_or_else(|| "not loaded".to_string()),
        };
        let _ = writeln!(out, "      {loaded}; hash {}", p.hash);
        if let (Some(calls), Some(traps), Some(timeouts)) = (p.calls, p.traps, p.timeouts) {
            let dead = p
                .dead_letters
                .map(|d| format!(", dead letters {d}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      since the host started: calls {calls}, traps {traps}, timeouts {timeouts}{dead}"
            );
        }
        if let Some(e) = &p.last_reload_error {
            let when = p
                .last_reload_error_at_ms
                .map(|t| ago(s.generated_at_ms, t))
                .unwrap_or_default();
            let bytes = p
                .last_reload_error_hash
                .as_ref()
                .map(|h| format!(", file hash {h}"))
                .unwrap_or_default();
            let _ = writeln!(out, "      last reload error ({when}{bytes}): {e}");
        }
    }
    if !s.findings.is_empty() {
        let _ = writeln!(out, "\nLatest audit findings");
        for f in &s.findings {
            let _ = writeln!(
                out,
                "  {:<8} {}: {}  [{}]",
                f.severity.to_uppercase(),
                f.subject,
                f.message,
                f.source
            );
        }
    }
    out
}

/// What is known of a generator's production.
fn generator_text(g: &GeneratorStatus) -> String {
    let errors = g.delivery_errors.unwrap_or(0);
    match (g.running, g.produced) {
        (true, n) => format!("running, produced {}  delivery errors {errors}", n.unwrap_or(0)),
        (false, Some(n)) => format!("not running; produced {n} in its last run (delivery errors {errors})"),
        (false, None) => "not running; produced: unknown (no host runs it)".to_string(),
    }
}

/// How long before `now_ms` the time `at_ms` was, for people.
fn ago(now_ms: u64, at_ms: u64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(running: bool, produced: Option<u64>) -> GeneratorStatus {
        GeneratorStatus {
            name: "g".into(),
            topic: "t".into(),
            running,
            produced,
            delivery_errors: produced.map(|_| 0),
        }
    }

    #[test]
    fn a_generator_not_running_says_what_is_known() {
        assert_eq!(
            generator_text(&generator(false, None)),
            "not running; produced: unknown (no host runs it)"
        );
        assert_eq!(
            generator_text(&generator(false, Some(30))),
            "not running; produced 30 in its last run (delivery errors 0)"
        );
        assert!(generator_text(&generator(true, Some(5))).starts_with("running, produced 5"));
    }

    #[test]
    fn a_plugin_shows_its_world_health_and_last_reload_error() {
        let s = Status {
            pipeline: "p.toml".into(),
            version: "0".into(),
            generated_at_ms: 100_000,
            host_running: true,
            ready: true,
            not_ready: vec![],
            postgres: Reachability::default(),
            kafka: Reachability::default(),
            sinks: vec![],
            generators: vec![],
            plugins: vec![super::super::status::PluginStatus {
                name: "sink rows".into(),
                path: "/p/m.wasm".into(),
                hash: "abc".into(),
                world: Some("mapper".into()),
                contract: Some("0.2.0".into()),
                loaded_at_ms: Some(40_000),
                last_reload_error: Some("/p/m.wasm is not a WebAssembly component".into()),
                last_reload_error_at_ms: Some(90_000),
                last_reload_error_hash: Some("def".into()),
                calls: Some(7),
                traps: Some(2),
                timeouts: Some(1),
                dead_letters: Some(3),
                ..Default::default()
            }],
            findings: vec![],
        };
        let text = render(&s);
        assert!(
            text.contains("mapper, contract 0.2.0, loaded 1 min ago; hash abc"),
            "{text}"
        );
        assert!(text.contains("calls 7, traps 2, timeouts 1, dead letters 3"), "{text}");
        assert!(
            text.contains("last reload error (10 s ago, file hash def): /p/m.wasm is not a WebAssembly component"),
            "{text}"
        );
    }

    #[test]
    fn times_read_as_how_long_ago() {
        assert_eq!(ago(10_000, 4_000), "6 s ago");
        assert_eq!(ago(600_000, 0), "10 min ago");
        assert_eq!(ago(4 * 3_600_000, 0), "4 h ago");
        assert_eq!(ago(0, 5), "0 s ago");
    }
}
