//! What a reload does, decided without doing it: from the running pipeline,
//! the new one and which units run, a list of [`Action`]s. The supervisor
//! executes them; everything here is pure, so every case is unit-tested
//! without Kafka, PostgreSQL or a plugin.

use super::RunOptions;
use super::reload::normalize;
use crate::config::{GeneratorConfig, Pipeline, PluginConfig, SinkConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The two kinds of unit the supervisor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Generator,
    Sink,
}

impl Kind {
    /// As names appear in messages: `generator a`, `sink rows`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Generator => "generator",
            Kind::Sink => "sink",
        }
    }
}

/// A unit: names are unique per kind (config validation sees to it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId {
    pub kind: Kind,
    pub name: String,
}

impl UnitId {
    pub fn generator(name: &str) -> Self {
        Self {
            kind: Kind::Generator,
            name: name.to_string(),
        }
    }

    pub fn sink(name: &str) -> Self {
        Self {
            kind: Kind::Sink,
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.name)
    }
}

/// One step of a reload, in the order the list gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The checks or `[audit]` changed, or a check plugin's file did.
    RestartAudit,
    /// Removed from the pipeline (or out of the run's scope). A sink is
    /// waited for, so a successor in its group never overlaps it.
    Stop(UnitId),
    /// What the unit is (a sink's topic, table, group or member id) changed:
    /// stop it, wait, start it with the new settings.
    Restart(UnitId),
    /// Wanted and not running: load its plugin and start it.
    Start(UnitId),
    /// Load the unit's plugin anew (its file, settings, limits or seed
    /// changed) and hand it over; when that fails, the unit's later actions
    /// in the same list are skipped and it keeps running as it was.
    SwapPlugin(UnitId),
    /// Hand the unit its new settings.
    UpdateSettings(UnitId),
}

/// A unit's settings, whichever its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitConfig {
    Generator(GeneratorConfig),
    Sink(SinkConfig),
}

impl UnitConfig {
    pub fn id(&self) -> UnitId {
        match self {
            UnitConfig::Generator(g) => UnitId::generator(&g.name),
            UnitConfig::Sink(s) => UnitId::sink(&s.name),
        }
    }

    pub fn topic(&self) -> &str {
        match self {
            UnitConfig::Generator(g) => &g.topic,
            UnitConfig::Sink(s) => &s.topic,
        }
    }

    pub fn plugin(&self) -> &PluginConfig {
        match self {
            UnitConfig::Generator(g) => &g.plugin,
            UnitConfig::Sink(s) => &s.mapper,
        }
    }

    /// The seed handed to the plugin when it is instantiated.
    pub fn seed(&self) -> Option<u64> {
        match self {
            UnitConfig::Generator(g) => g.seed,
            UnitConfig::Sink(_) => None,
        }
    }

    /// Whether going from `self` to `new` needs a new plugin instance.
    fn needs_new_plugin(&self, new: &UnitConfig) -> bool {
        self.plugin() != new.plugin() || self.seed() != new.seed()
    }

    /// Whether going from `self` to `new` needs a new unit: a sink joins its
    /// group for one topic and writes one table in one mode, so those are
    /// fixed for its life (a new mode or key needs the table checked again;
    /// its consumer keeps the `start` it was made with). A generator takes a
    /// new topic live.
    fn needs_restart(&self, new: &UnitConfig) -> bool {
        match (self, new) {
            (UnitConfig::Sink(o), UnitConfig::Sink(n)) => {
                // A new format needs a new decoder, made when the sink starts.
                (
                    &o.topic,
                    &o.table,
                    &o.group,
                    &o.instance_id,
                    &o.mode,
                    o.start,
                    &o.registry.format,
                    &o.registry.key_format,
                ) != (
                    &n.topic,
                    &n.table,
                    &n.group,
                    &n.instance_id,
                    &n.mode,
                    n.start,
                    &n.registry.format,
                    &n.registry.key_format,
                )
            }
            _ => false,
        }
    }

    /// Whether the unit needs its settings handed over again. A sink's key
    /// that only moved in the file is no change of mode, but the sink's
    /// errors must name its new line.
    fn needs_settings(&self, new: &UnitConfig) -> bool {
        match (self, new) {
            (UnitConfig::Sink(o), UnitConfig::Sink(n)) => o != n || o.mode.at() != n.mode.at(),
            _ => self != new,
        }
    }
}

/// Every generator and sink of a pipeline, generators first.
pub fn units(pipeline: &Pipeline) -> Vec<UnitConfig> {
    pipeline
        .generators
        .iter()
        .cloned()
        .map(UnitConfig::Generator)
        .chain(pipeline.sinks.iter().cloned().map(UnitConfig::Sink))
        .collect()
}

/// Whether this run (`--generators-only`, `--sinks-only`, `--topic`) runs the unit.
pub fn in_scope(options: &RunOptions, unit: &UnitConfig) -> bool {
    let kind = match unit {
        UnitConfig::Generator(_) => options.generators,
        UnitConfig::Sink(_) => options.sinks,
    };
    kind && options.topic.as_deref().is_none_or(|t| t == unit.topic())
}

/// The actions that take the run from `old` to `new` (already parsed and
/// valid; an invalid file never gets here, so it changes nothing).
/// `running` is what runs now: a unit that finished on its own and is still
/// wanted is started again, as before.
///
/// Order: the audit; then per kind (generators, then sinks) the stops, the
/// restarts, and the swaps, settings and starts by name. `[kafka]` and
/// `[postgres]` are not compared: the caller keeps the running connections.
pub fn pipeline_changed(
    old: &Pipeline,
    new: &Pipeline,
    running: &BTreeSet<UnitId>,
    options: &RunOptions,
) -> Vec<Action> {
    let mut actions = Vec::new();
    if old.checks != new.checks || old.audit != new.audit {
        actions.push(Action::RestartAudit);
    }
    let before: BTreeMap<UnitId, UnitConfig> = units(old).into_iter().map(|u| (u.id(), u)).collect();
    let wanted: BTreeMap<UnitId, UnitConfig> = units(new)
        .into_iter()
        .filter(|u| in_scope(options, u))
        .map(|u| (u.id(), u))
        .collect();
    for kind in [Kind::Generator, Kind::Sink] {
        let of_kind = running.iter().filter(|id| id.kind == kind);
        let mut restarted = BTreeSet::new();
        for id in of_kind.clone().filter(|id| !wanted.contains_key(*id)) {
            actions.push(Action::Stop(id.clone()));
        }
        for id in of_kind.filter(|id| wanted.contains_key(*id)) {
            if let (Some(o), Some(n)) = (before.get(id), wanted.get(id))
                && o.needs_restart(n)
            {
                actions.push(Action::Restart(id.clone()));
                restarted.insert(id.clone());
            }
        }
        for (id, config) in wanted.iter().filter(|(id, _)| id.kind == kind) {
            if restarted.contains(id) {
                continue;
            }
            if !running.contains(id) {
                actions.push(Action::Start(id.clone()));
                continue;
            }
            // A running unit is always in the old pipeline.
            let Some(o) = before.get(id) else { continue };
            if o.needs_new_plugin(config) {
                actions.push(Action::SwapPlugin(id.clone()));
            }
            if o.needs_settings(config) {
                actions.push(Action::UpdateSettings(id.clone()));
            }
        }
    }
    actions
}

/// A save of the pipeline file: `None` when its text is the one last applied
/// (a touch, an editor saving unchanged), an error when it is invalid (then
/// nothing changes: the running pipeline keeps going), else the new pipeline
/// to plan with [`pipeline_changed`].
pub fn pipeline_file_saved(
    applied_text: Option<&str>,
    path: &Path,
    text: &str,
) -> Result<Option<Pipeline>, crate::config::ConfigError> {
    if applied_text == Some(text) {
        return Ok(None);
    }
    Pipeline::parse(path, text).map(Some)
}

/// Whether a plugin file whose bytes now hash to `new` needs handling:
/// not when the running version has these bytes (a touch, a save of the same
/// file), nor when these bytes were already looked at (and refused).
pub fn file_is_new(new: &str, running: Option<&str>, seen: Option<&str>) -> bool {
    running != Some(new) && seen != Some(new)
}

/// The actions for a plugin file whose bytes changed (see [`file_is_new`]):
/// the audit restarts when a check uses it, and every running unit whose
/// plugin is that file gets a new instance. `path` is normalized.
pub fn plugin_file_changed(pipeline: &Pipeline, running: &BTreeSet<UnitId>, path: &Path) -> Vec<Action> {
    let mut actions = Vec::new();
    if pipeline.checks.iter().any(|c| normalize(&c.plugin.path) == path) {
        actions.push(Action::RestartAudit);
    }
    actions.extend(
        units(pipeline)
            .into_iter()
            .filter(|u| running.contains(&u.id()) && normalize(&u.plugin().path) == path)
            .map(|u| Action::SwapPlugin(u.id())),
    );
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TEST_CONNECTIONS;
    use std::path::PathBuf;

    /// The topics every test pipeline declares, after the connection sections.
    const TOPICS: &str = r#"
[[topics]]
name = "t1"

[[topics]]
name = "t2"
"#;

    fn generator(name: &str, extra: &str) -> String {
        format!(
            "[[generators]]\nname = \"{name}\"\ntopic = \"t1\"\nplugin = \"/nowhere/cars.wasm\"\ninterval_ms = 20\n{extra}\n"
        )
    }

    fn sink(name: &str, extra: &str) -> String {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntopic = \"t1\"\ntable = \"rows_{name}\"\nmapper = \"/nowhere/json_row.wasm\"\n{extra}\n"
        )
    }

    fn check(name: &str, plugin: &str) -> String {
        format!("[[checks]]\nname = \"{name}\"\nplugin = \"{plugin}\"\n")
    }

    /// A whole pipeline file: connections, topics, then `body`.
    fn file(body: &str) -> String {
        format!("{TEST_CONNECTIONS}{TOPICS}\n{body}")
    }

    fn pipeline(body: &str) -> Pipeline {
        Pipeline::parse(Path::new("/nowhere/pipeline.toml"), &file(body))
            .unwrap_or_else(|e| panic!("test pipeline is valid: {e}"))
    }

    fn everything() -> RunOptions {
        RunOptions {
            generators: true,
            sinks: true,
            ..RunOptions::default()
        }
    }

    fn running(p: &Pipeline) -> BTreeSet<UnitId> {
        units(p).iter().map(UnitConfig::id).collect()
    }

    fn plan(old: &str, new: &str) -> Vec<Action> {
        let (old, new) = (pipeline(old), pipeline(new));
        pipeline_changed(&old, &new, &running(&old), &everything())
    }

    fn g(name: &str) -> UnitId {
        UnitId::generator(name)
    }

    fn s(name: &str) -> UnitId {
        UnitId::sink(name)
    }

    #[test]
    fn the_same_pipeline_needs_nothing() {
        let body = format!(
            "{}{}{}",
            generator("a", ""),
            sink("r", ""),
            check("c", "/nowhere/c.wasm")
        );
        assert_eq!(plan(&body, &body), []);
    }

    #[test]
    fn a_generator_added_is_started_and_one_removed_is_stopped() {
        let (a, b) = (generator("a", ""), generator("b", ""));
        assert_eq!(plan(&a, &format!("{a}{b}")), [Action::Start(g("b"))]);
        assert_eq!(plan(&format!("{a}{b}"), &a), [Action::Stop(g("b"))]);
    }

    #[test]
    fn a_generator_renamed_is_a_stop_and_a_start() {
        assert_eq!(
            plan(&generator("a", ""), &generator("b", "")),
            [Action::Stop(g("a")), Action::Start(g("b"))]
        );
    }

    #[test]
    fn generator_settings_are_handed_over_without_a_new_plugin() {
        let before = generator("a", "");
        let slower = before.replace("interval_ms = 20", "interval_ms = 200");
        assert_eq!(plan(&before, &slower), [Action::UpdateSettings(g("a"))]);
        let counted = generator("a", "count = 10");
        assert_eq!(plan(&before, &counted), [Action::UpdateSettings(g("a"))]);
    }

    #[test]
    fn a_generator_moves_to_another_topic_live() {
        let before = generator("a", "");
        let moved = before.replace("topic = \"t1\"", "topic = \"t2\"");
        assert_eq!(plan(&before, &moved), [Action::UpdateSettings(g("a"))]);
    }

    #[test]
    fn a_generator_gets_a_new_plugin_when_its_file_settings_limits_or_seed_change() {
        let before = generator("a", "");
        let cases = [
            before.replace("/nowhere/cars.wasm", "/nowhere/langs.wasm"),
            generator("a", "seed = 7"),
            generator("a", "[generators.settings]\nspeed = 3"),
            generator("a", "[generators.limits]\ncall_timeout_ms = 1234"),
        ];
        for after in cases {
            assert_eq!(
                plan(&before, &after),
                [Action::SwapPlugin(g("a")), Action::UpdateSettings(g("a"))],
                "{after}"
            );
        }
    }

    #[test]
    fn a_sink_added_is_started_and_one_removed_is_stopped() {
        let (r, q) = (sink("r", ""), sink("q", ""));
        assert_eq!(plan(&r, &format!("{r}{q}")), [Action::Start(s("q"))]);
        assert_eq!(plan(&format!("{r}{q}"), &r), [Action::Stop(s("q"))]);
    }

    #[test]
    fn a_sink_restarts_when_its_topic_table_or_group_changes() {
        let before = sink("r", "");
        let cases = [
            before.replace("topic = \"t1\"", "topic = \"t2\""),
            before.replace("rows_r", "other_rows"),
            sink("r", "group = \"another-group\""),
            sink("r", "start = \"latest\""),
        ];
        for after in cases {
            assert_eq!(plan(&before, &after), [Action::Restart(s("r"))], "{after}");
        }
    }

    #[test]
    fn a_sink_restarts_when_its_mode_or_key_changes() {
        let append = sink("r", "");
        let upsert = sink("r", "mode = \"upsert\"\nkey = [\"id\"]");
        let other_key = sink("r", "mode = \"upsert\"\nkey = [\"name\"]");
        assert_eq!(plan(&append, &upsert), [Action::Restart(s("r"))]);
        assert_eq!(plan(&upsert, &other_key), [Action::Restart(s("r"))]);
        assert_eq!(plan(&upsert, &append), [Action::Restart(s("r"))]);
    }

    #[test]
    fn a_sink_key_that_only_moved_in_the_file_is_handed_over_for_its_messages() {
        let upsert = sink("r", "mode = \"upsert\"\nkey = [\"id\"]");
        let moved = format!("# a comment line moves the key down\n{upsert}");
        assert_eq!(plan(&upsert, &moved), [Action::UpdateSettings(s("r"))]);
    }

    #[test]
    fn sink_batch_settings_are_handed_over_live() {
        let before = sink("r", "");
        let after = sink("r", "batch_size = 7\nflush_interval_ms = 30");
        assert_eq!(plan(&before, &after), [Action::UpdateSettings(s("r"))]);
    }

    #[test]
    fn a_sink_gets_a_new_mapper_when_its_file_or_settings_change() {
        let before = sink("r", "");
        let cases = [
            before.replace("json_row.wasm", "other.wasm"),
            sink("r", "[sinks.settings]\nfield = \"x\""),
        ];
        for after in cases {
            assert_eq!(
                plan(&before, &after),
                [Action::SwapPlugin(s("r")), Action::UpdateSettings(s("r"))],
                "{after}"
            );
        }
    }

    #[test]
    fn stops_come_before_restarts_and_starts_generators_before_sinks() {
        let old = format!("{}{}{}", generator("a", ""), sink("q", ""), sink("r", ""));
        let new = format!(
            "{}{}{}",
            generator("b", ""),
            sink("p", ""),
            sink("r", "").replace("rows_r", "rows_r2")
        );
        assert_eq!(
            plan(&old, &new),
            [
                Action::Stop(g("a")),
                Action::Start(g("b")),
                Action::Stop(s("q")),
                Action::Restart(s("r")),
                Action::Start(s("p")),
            ]
        );
    }

    #[test]
    fn checks_or_audit_settings_changed_restart_the_audit_only() {
        let units = format!("{}{}", generator("a", ""), sink("r", ""));
        let one = format!("{units}{}", check("c", "/nowhere/c.wasm"));
        let two = format!("{one}{}", check("d", "/nowhere/d.wasm"));
        assert_eq!(plan(&one, &two), [Action::RestartAudit]);
        assert_eq!(plan(&two, &units), [Action::RestartAudit]);
        let audit = format!("{one}[audit]\ninterval_ms = 5000\n");
        assert_eq!(plan(&one, &audit), [Action::RestartAudit]);
    }

    #[test]
    fn a_unit_that_finished_and_is_still_wanted_starts_again() {
        let body = format!("{}{}", generator("a", "count = 5"), sink("r", ""));
        let (old, new) = (pipeline(&body), pipeline(&format!("{body}{}", generator("b", ""))));
        let only_the_sink = BTreeSet::from([s("r")]);
        assert_eq!(
            pipeline_changed(&old, &new, &only_the_sink, &everything()),
            [Action::Start(g("a")), Action::Start(g("b"))]
        );
    }

    #[test]
    fn the_run_scope_filters_what_starts_and_stops() {
        let old = pipeline(&format!("{}{}", generator("a", ""), sink("r", "")));
        let new = pipeline(&format!(
            "{}{}{}",
            generator("a", ""),
            generator("b", ""),
            sink("r", "").replace("topic = \"t1\"", "topic = \"t2\"")
        ));
        // `--sinks-only`: generators are not run, so not started.
        let sinks_only = RunOptions {
            sinks: true,
            ..RunOptions::default()
        };
        let the_sink = BTreeSet::from([s("r")]);
        assert_eq!(
            pipeline_changed(&old, &new, &the_sink, &sinks_only),
            [Action::Restart(s("r"))]
        );
        // `--topic t1`: the sink moving to t2 leaves this run.
        let t1 = RunOptions {
            topic: Some("t1".into()),
            ..everything()
        };
        assert_eq!(
            pipeline_changed(&old, &new, &running(&old), &t1),
            [Action::Start(g("b")), Action::Stop(s("r"))]
        );
    }

    #[test]
    fn connection_changes_alone_need_no_unit_action() {
        let body = format!("{}{}", generator("a", ""), sink("r", ""));
        let old = pipeline(&body);
        let mut new = old.clone();
        new.kafka.bootstrap_servers = "elsewhere:9093".into();
        assert_eq!(pipeline_changed(&old, &new, &running(&old), &everything()), []);
    }

    #[test]
    fn an_invalid_new_file_is_an_error_and_plans_nothing() {
        let path = Path::new("/nowhere/pipeline.toml");
        let applied = file(&generator("a", ""));
        for broken in [
            format!("{applied}[[generators]\nname = \"c\"\n"),
            format!("{applied}{}", generator("a", "")),
            applied.replace("interval_ms = 20", "interval_ms = \"fast\""),
            applied.replace("[kafka]", "[kafak]"),
        ] {
            let result = pipeline_file_saved(Some(&applied), path, &broken);
            assert!(result.is_err(), "{broken}");
        }
    }

    #[test]
    fn a_save_of_the_same_text_plans_nothing_and_a_new_text_is_parsed() {
        let path = Path::new("/nowhere/pipeline.toml");
        let applied = file(&generator("a", ""));
        assert!(matches!(pipeline_file_saved(Some(&applied), path, &applied), Ok(None)));
        let added = format!("{applied}{}", generator("b", ""));
        let new = pipeline_file_saved(Some(&applied), path, &added)
            .expect("valid")
            .expect("changed");
        assert_eq!(new.generators.len(), 2);
        // Only a comment changed: parsed, and the plan is empty.
        let commented = format!("# a note\n{applied}");
        let new = pipeline_file_saved(Some(&applied), path, &commented)
            .expect("valid")
            .expect("changed");
        let old = pipeline(&generator("a", ""));
        assert_eq!(pipeline_changed(&old, &new, &running(&old), &everything()), []);
    }

    #[test]
    fn a_plugin_file_is_new_only_with_bytes_not_running_nor_seen() {
        assert!(file_is_new("b", Some("a"), None));
        assert!(file_is_new("b", None, None));
        assert!(file_is_new("b", Some("a"), Some("c")));
        // Touched, or saved with the same bytes.
        assert!(!file_is_new("a", Some("a"), None));
        assert!(!file_is_new("a", Some("a"), Some("a")));
        // Already looked at (and refused): not again until the bytes change.
        assert!(!file_is_new("b", Some("a"), Some("b")));
    }

    #[test]
    fn a_changed_plugin_file_swaps_every_running_unit_using_it() {
        let shared = "/nowhere/shared.wasm";
        let body = format!(
            "{}{}{}{}{}",
            generator("a", "").replace("/nowhere/cars.wasm", shared),
            generator("b", ""),
            sink("q", "").replace("/nowhere/json_row.wasm", shared),
            sink("r", "").replace("/nowhere/json_row.wasm", shared),
            check("c", "/nowhere/c.wasm"),
        );
        let p = pipeline(&body);
        let mut running = running(&p);
        running.remove(&s("r"));
        assert_eq!(
            plugin_file_changed(&p, &running, &PathBuf::from(shared)),
            [Action::SwapPlugin(g("a")), Action::SwapPlugin(s("q"))]
        );
        assert_eq!(
            plugin_file_changed(&p, &running, Path::new("/nowhere/c.wasm")),
            [Action::RestartAudit]
        );
        assert_eq!(plugin_file_changed(&p, &running, Path::new("/nowhere/unused.wasm")), []);
    }
}
