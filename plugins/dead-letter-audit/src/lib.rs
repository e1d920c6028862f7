//! Check plugin: warns when a partition has more dead letters (messages its
//! mapper rejected or could not map) than the `threshold` setting (default 0,
//! so any dead letter is reported). Subject `topic/partition`.
use sdk::check::{Finding, Guest, Severity, Snapshot};
use std::sync::OnceLock;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Dead letters a partition may have before it is reported.
    #[serde(default)]
    threshold: i64,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct DeadLetterAudit;

impl Guest for DeadLetterAudit {
    fn configure(settings: String) -> Result<(), String> {
        let parsed: Settings = sdk::parse_settings("dead-letter-audit", &settings)?;
        if parsed.threshold < 0 {
            return Err("dead-letter-audit: settings.threshold must be 0 or more".into());
        }
        SETTINGS
            .set(parsed)
            .map_err(|_| "dead-letter-audit: configure called twice".to_string())
    }

    fn run(state: Snapshot) -> Vec<Finding> {
        let threshold = SETTINGS.get().map_or(0, |s| s.threshold);
        state
            .partitions
            .iter()
            .filter(|p| p.dead_letters > threshold)
            .map(|p| Finding {
                severity: Severity::Warning,
                subject: format!("{}/{}", p.topic, p.partition),
                message: format!(
                    "{} dead letters from sink {} (threshold {threshold}); see table wasm_stream_dead_letters for the reasons",
                    p.dead_letters, p.sink
                ),
            })
            .collect()
    }
}

sdk::export_check!(DeadLetterAudit);
