//! The report as readable text (`host check` without `--json`).

use super::{DbReport, KafkaReport, Report, Severity, SyncRow};
use std::fmt::Write as _;

/// Most topic names listed in the text report (`--json` lists all).
const MAX_TOPICS_LISTED: usize = 30;

/// The whole report, one section per part checked, then the findings and the verdict.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if let Some(db) = &report.db {
        db_section(&mut out, db);
    }
    if let Some(kafka) = &report.kafka {
        kafka_section(&mut out, kafka);
    }
    if let Some(rows) = &report.sync {
        sync_section(&mut out, rows);
    }
    findings_section(&mut out, report);
    out
}

fn db_section(out: &mut String, db: &DbReport) {
    let _ = writeln!(out, "PostgreSQL {}", db.server);
    if !db.reachable {
        let _ = writeln!(out, "  NOT reachable (see the findings)\n");
        return;
    }
    match (&db.tls_version, &db.tls_cipher) {
        (Some(v), Some(c)) => {
            let _ = writeln!(out, "  reachable over TLS: {v}, {c} (pg_stat_ssl)");
        }
        _ => {
            let _ = writeln!(out, "  reachable, NOT encrypted");
        }
    }
    if let Some(name) = &db.database {
        let version = db.server_version.as_deref().unwrap_or("?");
        let _ = writeln!(out, "  database: {name} (PostgreSQL {version})");
    }
    for t in &db.tables {
        match t.rows {
            Some(rows) if t.exists => {
                let _ = writeln!(out, "  table {} (sink {}): {rows} rows", t.table, t.sink);
                match &t.last_row {
                    Some(row) => {
                        let _ = writeln!(out, "    last row: {row}");
                    }
                    None => {
                        let _ = writeln!(out, "    last row: none (the table is empty)");
                    }
                }
            }
            _ if !t.exists => {
                let _ = writeln!(out, "  table {} (sink {}): does not exist yet", t.table, t.sink);
            }
            _ => {
                let _ = writeln!(out, "  table {} (sink {}): cannot be read", t.table, t.sink);
            }
        }
    }
    out.push('\n');
}

fn kafka_section(out: &mut String, kafka: &KafkaReport) {
    let _ = writeln!(
        out,
        "Kafka {} (security.protocol={})",
        kafka.bootstrap_servers, kafka.security_protocol
    );
    if !kafka.reachable {
        let _ = writeln!(out, "  NOT reachable (see the findings)\n");
        return;
    }
    let how = if kafka.security_protocol == "ssl" {
        "over TLS"
    } else {
        "NOT encrypted"
    };
    let _ = writeln!(
        out,
        "  reachable {how}: {} broker(s): {}",
        kafka.brokers.len(),
        kafka.brokers.join(", ")
    );
    let shown: Vec<&str> = kafka
        .topics
        .iter()
        .take(MAX_TOPICS_LISTED)
        .map(String::as_str)
        .collect();
    let more = kafka.topics.len().saturating_sub(shown.len());
    let _ = write!(out, "  topics visible ({}): {}", kafka.topics.len(), shown.join(", "));
    if more > 0 {
        let _ = write!(out, ", and {more} more (--json lists them all)");
    }
    out.push('\n');
    for t in &kafka.details {
        let declared = t
            .declared_partitions
            .map_or_else(String::new, |d| format!(" (declared {d})"));
        if !t.exists {
            let _ = writeln!(out, "  topic {}: does not exist{declared}", t.topic);
            continue;
        }
        let _ = writeln!(
            out,
            "  topic {}: {} partition(s){declared}",
            t.topic,
            t.partitions.len()
        );
        for p in &t.partitions {
            let _ = writeln!(
                out,
                "    partition {}: leader {}, {} replica(s)",
                p.partition, p.leader, p.replicas
            );
        }
    }
    out.push('\n');
}

fn sync_section(out: &mut String, rows: &[SyncRow]) {
    let _ = writeln!(
        out,
        "Offsets (PostgreSQL holds the truth; Kafka's committed offsets are advisory)"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "  no partitions: no sink, or its topic does not exist yet\n");
        return;
    }
    let number = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let header = [
        "SINK",
        "TOPIC/PARTITION",
        "END",
        "COMMITTED",
        "STORED",
        "LAG",
        "DEAD LETTERS",
        "VERDICT",
    ];
    let body: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.sink.clone(),
                format!("{}/{}", r.topic, r.partition),
                number(r.end_offset),
                number(r.committed_offset),
                number(r.stored_offset),
                number(r.lag),
                r.dead_letters.to_string(),
                r.verdict.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &body {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
}

fn findings_section(out: &mut String, report: &Report) {
    let _ = writeln!(out, "Findings");
    if report.findings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in &report.findings {
        let severity = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "info",
        };
        let message = f.message.replace('\n', "\n      ");
        let _ = writeln!(out, "  {severity:<7}  {}: {message}  [{}]", f.subject, f.source);
    }
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let why = match report.exit_code {
        0 => "all is well",
        1 => "a check found something",
        _ => "a system could not be reached",
    };
    let _ = writeln!(
        out,
        "\nResult: {} error(s), {} warning(s): {why} (exit {})",
        count(Severity::Error),
        count(Severity::Warning),
        report.exit_code
    );
}
