//! `host plugin ...`: the plugin author's loop without Kafka or PostgreSQL.
//! `test` runs one component under the pipeline's sandbox and limits and
//! prints what it makes, `inspect` says what a component is and whether this
//! host can run it, `new` (in [`super::scaffold`]) writes a project.
//!
//! Exit codes of `test`: 0 all went as expected, 1 the output differs from
//! `--expect`, 2 the plugin cannot load or the input is unusable.

use super::{
    CACHE_WRITE_WAIT, CheckWorld, Compiled, GeneratorWorld, MapperWorld, PluginError, Runtime, World, check,
    content_hash, mapper,
};
use crate::config::{
    DEFAULT_CALL_TIMEOUT_MS, DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MEMORY_LIMIT_BYTES, PluginConfig, PluginLimits,
};
use anyhow::{Context as _, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most differences `--expect` prints.
const DIFF_LINES: usize = 20;

/// `host plugin ...`
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Run a plugin once, with no Kafka and no PostgreSQL, under the same
    /// sandbox and limits as a pipeline, and print what it makes.
    ///
    /// The world is read from the component. A generator prints --count
    /// messages, one payload a line; with --calls N it is called N times for
    /// --count messages each, as `host run` calls it, and a call that fails
    /// is named. A mapper maps each line of --input (a
    /// payload per line, or JSON lines such as {"payload": "...", "key": "k",
    /// "partition": 0, "offset": 7, "timestamp": 1700000000000}; bytes that
    /// are not text as "payload_base64" or "key_base64") and prints
    /// its columns, the rows as a table and each rejection with its reason.
    /// With --registry URL its payloads are in the schema registry's wire
    /// format: each is decoded to JSON (its schema fetched by id) before the
    /// mapper sees it, as a sink with `format = "avro"` does, and the output
    /// shows the schema id and the decoded JSON. A check judges the --snapshot (JSON of the snapshot record of
    /// wit/plugin.wit) and prints its findings.
    ///
    /// With --expect FILE the output is compared with the file: a difference
    /// is printed and the exit code is 1, so plugins can be tested in CI.
    /// Exit code 2: the plugin cannot load (wrong world, trap in configure,
    /// refused settings), the input cannot be read, or a generator call fails.
    ///
    /// Compiled code is kept in the cache `host run` uses, so a large
    /// (Python, JavaScript) component compiles once per version.
    ///
    /// Example: host plugin test my_generator.wasm --count 5 --seed 1
    Test(Box<TestArgs>),
    /// Say what a component is: the world and contract version it targets,
    /// its imports and whether this host provides each, its size, the hash
    /// the reload log prints, and how long it takes to compile.
    ///
    /// Exit code 1 when the host would refuse it.
    ///
    /// Example: host plugin inspect target/wasm32-wasip2/release/langs.wasm
    Inspect {
        /// The component (.wasm).
        plugin: PathBuf,
    },
    /// Write a new plugin project (outside this repository) that builds
    /// with its language's usual command.
    ///
    /// Example: host plugin new generator my-gen --lang rust --dir ~/src
    New(super::scaffold::NewArgs),
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// The component (.wasm).
    pub plugin: PathBuf,
    /// Generator: how many messages to ask for (in calls of at most 500,
    /// or in each call with --calls).
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Generator: make this many `next(--count)` calls on one instance, as
    /// `host run` does (it asks for 500 a call with interval_ms = 0, else 1),
    /// so a fault on a later call or a sequence across calls shows.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,
    /// Generator: seed `wasi:random`, as `seed` in pipeline.toml does.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The plugin's settings, as a JSON object (the [settings] table of pipeline.toml).
    #[arg(long, default_value = "{}")]
    pub settings: String,
    /// Mapper: the messages, one a line (`-` for stdin).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Check: the snapshot, as JSON.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    #[command(flatten)]
    pub registry: registry::RegistryArgs,
    /// Compare the output with this file; exit 1 on a difference.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// Print JSON instead of text (for scripts).
    #[arg(long)]
    pub json: bool,
    /// The call deadline (limits.call_timeout_ms).
    #[arg(long, default_value_t = DEFAULT_CALL_TIMEOUT_MS)]
    pub call_timeout_ms: u64,
    /// The memory cap (limits.memory_limit_bytes).
    #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_BYTES)]
    pub memory_limit_bytes: usize,
    /// How long compiling may take (limits.compile_timeout_ms).
    #[arg(long, default_value_t = DEFAULT_COMPILE_TIMEOUT_MS)]
    pub compile_timeout_ms: u64,
}

/// Why a command failed, and with which exit code.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

fn unusable(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

/// Runs a `host plugin` command; returns its exit code (0 or 1).
pub fn execute(command: PluginCommand) -> Result<u8, Failure> {
    match command {
        PluginCommand::Test(args) => test(&args),
        PluginCommand::Inspect { plugin } => super::inspect::run(&plugin).map_err(unusable),
        PluginCommand::New(args) => super::scaffold::run(&args).map(|()| 0).map_err(unusable),
    }
}

/// The world a component targets, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Generator,
    Mapper,
    Check,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Generator, Kind::Mapper, Kind::Check];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Generator => GeneratorWorld::KIND,
            Kind::Mapper => MapperWorld::KIND,
            Kind::Check => CheckWorld::KIND,
        }
    }

    /// The world's name in wit/plugin.wit.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Generator => "generator-plugin",
            Kind::Mapper => "mapper-plugin",
            Kind::Check => "check-plugin",
        }
    }

    /// The interface this host expects the component to export.
    pub fn export(self) -> &'static str {
        match self {
            Kind::Generator => GeneratorWorld::EXPORT,
            Kind::Mapper => MapperWorld::EXPORT,
            Kind::Check => CheckWorld::EXPORT,
        }
    }

    /// The interface name without version, e.g. `wasm-stream:plugin/generator`.
    pub fn unversioned(self) -> &'static str {
        let export = self.export();
        export.split_once('@').map_or(export, |(name, _)| name)
    }
}

/// The contract version this host implements, e.g. `0.2.0`.
pub fn contract_version() -> &'static str {
    super::CONTRACT_VERSION
}

/// Which world an export list targets, and at which contract version.
pub fn world_of(exports: &[String]) -> Option<(Kind, String)> {
    Kind::ALL.into_iter().find_map(|kind| {
        exports.iter().find_map(|e| {
            let (name, version) = e.split_once('@').unwrap_or((e.as_str(), ""));
            (name == kind.unversioned()).then(|| (kind, version.to_string()))
        })
    })
}

/// A compiled component whose world has been read from it.
struct Loaded {
    runtime: Runtime,
    path: PathBuf,
    component: wasmtime::component::Component,
    hash: String,
    kind: Kind,
}

impl Loaded {
    fn read(runtime: &Runtime, path: &Path, limits: &PluginLimits) -> Result<Self, PluginError> {
        let bytes = std::fs::read(path).map_err(|error| PluginError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let (compiles, started) = (runtime.compiles(), Instant::now());
        let component = runtime.component(path, &bytes, limits)?;
        let ms = started.elapsed().as_millis();
        match runtime.cache_dir() {
            Some(dir) if runtime.compiles() == compiles => {
                eprintln!("compiled code read from the cache in {ms} ms ({})", dir.display());
            }
            _ => eprintln!("compiled in {ms} ms"),
        }
        let exports = runtime.exports(&component);
        let Some((kind, _)) = world_of(&exports) else {
            return Err(PluginError::NoWorld {
                path: path.to_path_buf(),
                found: exports.join(", "),
            });
        };
        Ok(Self {
            runtime: runtime.clone(),
            path: path.to_path_buf(),
            component,
            hash: content_hash(&bytes),
            kind,
        })
    }

    fn prepare<W: World>(&self) -> Result<Compiled<W>, PluginError> {
        self.runtime
            .prepare::<W>(&self.path, &self.component, self.hash.clone())
    }
}

fn test(args: &TestArgs) -> Result<u8, Failure> {
    let limits = PluginLimits {
        call_timeout: Duration::from_millis(args.call_timeout_ms),
        memory_limit_bytes: args.memory_limit_bytes,
        compile_timeout: Duration::from_millis(args.compile_timeout_ms),
        ..PluginLimits::default()
    };
    let settings: serde_json::Value = serde_json::from_str(&args.settings)
        .with_context(|| format!("--settings is not JSON: {:?}", args.settings))
        .map_err(unusable)?;
    if !settings.is_object() {
        return Err(unusable(anyhow::anyhow!(
            "--settings must be a JSON object, like the [settings] table of pipeline.toml: {:?}",
            args.settings
        )));
    }
    let config = PluginConfig {
        path: args.plugin.clone(),
        settings: settings.to_string(),
        limits,
    };
    let runtime = Runtime::new().map_err(unusable)?;
    let result = run_test(args, &runtime, &config);
    // The compile thread writes the cache after handing over the code: an
    // exit now would leave a partial file and compile again next run.
    if !super::finish_cache_writes(CACHE_WRITE_WAIT) {
        eprintln!("warning: the compiled code did not reach the cache in time; the next run compiles again");
    }
    result
}

fn run_test(args: &TestArgs, runtime: &Runtime, config: &PluginConfig) -> Result<u8, Failure> {
    let limits = config.limits;
    let load = |e: PluginError| {
        let here =
            matches!(e, PluginError::Configure { .. }).then_some("\n  (here, the settings are the --settings JSON)");
        unusable(anyhow::anyhow!("{e}{}", here.unwrap_or_default()))
    };
    let loaded = Loaded::read(runtime, &args.plugin, &limits).map_err(load)?;
    let name = format!("{} {}", loaded.kind.name(), file_stem(&args.plugin));
    let output = match loaded.kind {
        Kind::Generator => {
            let plugin = loaded
                .prepare::<GeneratorWorld>()
                .and_then(|c| c.instantiate(&name, config, args.seed))
                .map_err(load)?;
            let calls = match args.calls {
                None => Calls::Chunked(args.count),
                Some(n) => Calls::Each {
                    calls: n,
                    count: u32::try_from(args.count)
                        .map_err(|_| unusable(anyhow::anyhow!("--count is over {} with --calls", u32::MAX)))?,
                },
            };
            let (output, failed) = run_generator(plugin, calls, args.json);
            if let Some(error) = failed {
                // What the calls before the failing one made, then why it failed.
                print!("{output}");
                return Err(unusable(error));
            }
            output
        }
        Kind::Mapper => {
            let input = args
                .input
                .as_ref()
                .context("a mapper needs --input FILE (or `--input -` for stdin): one message a line")
                .map_err(unusable)?;
            let messages = read_messages(input).map_err(unusable)?;
            let (messages, shown) = registry::decode(&args.registry, messages).map_err(unusable)?;
            let plugin = loaded
                .prepare::<MapperWorld>()
                .and_then(|c| c.instantiate(&name, config, None))
                .map_err(load)?;
            run_mapper(plugin, &messages, &shown, args.json)
        }
        Kind::Check => {
            let path = args
                .snapshot
                .as_ref()
                .context("a check needs --snapshot FILE: the snapshot record of wit/plugin.wit, as JSON")
                .map_err(unusable)?;
            let snapshot = read_snapshot(path).map_err(unusable)?;
            let plugin = loaded
                .prepare::<CheckWorld>()
                .and_then(|c| c.instantiate(&name, config, None))
                .map_err(load)?;
            run_check(plugin, &snapshot, args.json).map_err(unusable)?
        }
    };
    print!("{output}");
    match &args.expect {
        None => Ok(0),
        Some(path) => {
            let expected = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --expect file {}", path.display()))
                .map_err(unusable)?;
            match diff(&expected, &output) {
                None => {
                    eprintln!("output matches {}", path.display());
                    Ok(0)
                }
                Some(diff) => {
                    eprintln!("output differs from {} (- expected, + actual):\n{diff}", path.display());
                    Ok(1)
                }
            }
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
}

/// Reads mapper input: each line a message, either a bare payload or a JSON
/// object with `payload` and any of key, partition, offset, timestamp, topic.
pub fn read_messages(path: &Path) -> anyhow::Result<Vec<mapper::Message>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the messages from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read --input file {}", path.display()))?
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| parse_message(i, line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

const MESSAGE_FIELDS: [&str; 8] = [
    "payload",
    "key",
    "partition",
    "offset",
    "timestamp",
    "topic",
    // Bytes that are not text, such as the registry's wire format.
    "payload_base64",
    "key_base64",
];

fn parse_message(index: usize, line: &str) -> anyhow::Result<mapper::Message> {
    let offset = i64::try_from(index).unwrap_or(i64::MAX);
    let mut message = mapper::Message {
        topic: "test".into(),
        partition: 0,
        offset,
        timestamp: None,
        key: None,
        payload: Some(line.as_bytes().to_vec()),
        schema: None,
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(line) else {
        return Ok(message);
    };
    // A JSON line is a message record only when it has a payload and nothing
    // else than a message's fields; any other JSON is itself the payload.
    let has_payload = fields.contains_key("payload") || fields.contains_key("payload_base64");
    if !has_payload || fields.keys().any(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        return Ok(message);
    }
    let bytes = |v: &serde_json::Value, what: &str| -> anyhow::Result<Option<Vec<u8>>> {
        Ok(match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => Some(v.to_string().into_bytes()),
            other => bail!("{what} must be a string, null or JSON: {other}"),
        })
    };
    for (k, v) in &fields {
        match k.as_str() {
            "payload" => message.payload = bytes(v, "payload")?,
            "key" => message.key = bytes(v, "key")?,
            "payload_base64" => message.payload = registry::base64_field(v, k)?,
            "key_base64" => message.key = registry::base64_field(v, k)?,
            "topic" => message.topic = v.as_str().context("topic must be a string")?.to_string(),
            "partition" => {
                message.partition = v
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .context("partition must be a 32-bit integer")?;
            }
            "offset" => message.offset = v.as_i64().context("offset must be an integer")?,
            "timestamp" => {
                message.timestamp = match v {
                    serde_json::Value::Null => None,
                    v => Some(
                        v.as_i64()
                            .context("timestamp must be milliseconds since the Unix epoch")?,
                    ),
                }
            }
            _ => {}
        }
    }
    Ok(message)
}

fn render_table(table: &[Vec<String>]) -> String {
    let width = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in table.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "  {}", cells.join(" | ").trim_end());
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("-+-"));
        }
    }
    out
}

fn sql_type(kind: mapper::ColumnType) -> &'static str {
    match kind {
        mapper::ColumnType::Text => "text",
        mapper::ColumnType::Integer => "bigint",
        mapper::ColumnType::Float => "double precision",
        mapper::ColumnType::Boolean => "boolean",
        mapper::ColumnType::Timestamp => "timestamptz",
        mapper::ColumnType::Json => "jsonb",
        mapper::ColumnType::Uuid => "uuid",
        mapper::ColumnType::Numeric => "numeric",
        mapper::ColumnType::Bytea => "bytea",
        mapper::ColumnType::Date => "date",
    }
}

fn value_text(v: &mapper::Value) -> String {
    match v {
        mapper::Value::Null => "null".into(),
        mapper::Value::Text(s) | mapper::Value::Json(s) => s.replace('\n', "\\n"),
        mapper::Value::Integer(i) => i.to_string(),
        mapper::Value::Float(f) => f.to_string(),
        mapper::Value::Boolean(b) => b.to_string(),
        mapper::Value::Timestamp(us) => timestamp_text(*us),
        mapper::Value::Uuid(s) | mapper::Value::Numeric(s) => s.clone(),
        mapper::Value::Bytea(b) => bytea_text(b),
        mapper::Value::Date(days) => date_text(*days),
    }
}

fn value_json(v: &mapper::Value) -> serde_json::Value {
    match v {
        mapper::Value::Null => serde_json::Value::Null,
        mapper::Value::Text(s) => s.clone().into(),
        mapper::Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
        mapper::Value::Integer(i) => (*i).into(),
        mapper::Value::Float(f) => (*f).into(),
        mapper::Value::Boolean(b) => (*b).into(),
        mapper::Value::Timestamp(us) => timestamp_text(*us).into(),
        // Text, as PostgreSQL's row_to_json renders these types.
        mapper::Value::Uuid(s) | mapper::Value::Numeric(s) => s.clone().into(),
        mapper::Value::Bytea(b) => bytea_text(b).into(),
        mapper::Value::Date(days) => date_text(*days).into(),
    }
}

/// Bytes as PostgreSQL prints a `bytea`: `\x` and hex digits.
pub fn bytea_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Days since the Unix epoch as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    let (year, month, day) = civil(i64::from(days));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The civil date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn timestamp_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The snapshot record of wit/plugin.wit, as JSON (snake_case or kebab-case keys).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotJson {
    #[serde(default, alias = "taken-at")]
    taken_at: i64,
    #[serde(default)]
    partitions: Vec<PartitionJson>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionJson {
    #[serde(default)]
    sink: String,
    topic: String,
    partition: i32,
    #[serde(default)]
    table: String,
    #[serde(default, alias = "consumer-group")]
    consumer_group: String,
    #[serde(default, alias = "end-offset")]
    end_offset: Option<i64>,
    #[serde(default, alias = "committed-offset")]
    committed_offset: Option<i64>,
    #[serde(default, alias = "stored-offset")]
    stored_offset: Option<i64>,
    #[serde(default, alias = "dead-letters")]
    dead_letters: i64,
}

fn read_snapshot(path: &Path) -> anyhow::Result<check::Snapshot> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read --snapshot file {}", path.display()))?;
    let s: SnapshotJson = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a snapshot: expected {{\"taken_at\": ms, \"partitions\": [{{\"topic\", \"partition\", \"end_offset\", \"committed_offset\", \"stored_offset\", \"dead_letters\", ...}}]}}",
            path.display()
        )
    })?;
    Ok(check::Snapshot {
        taken_at: s.taken_at,
        partitions: s
            .partitions
            .into_iter()
            .map(|p| check::PartitionState {
                sink: p.sink,
                topic: p.topic,
                partition: p.partition,
                table: p.table,
                consumer_group: p.consumer_group,
                end_offset: p.end_offset,
                committed_offset: p.committed_offset,
                stored_offset: p.stored_offset,
                dead_letters: p.dead_letters,
            })
            .collect(),
    })
}

fn run_check(mut plugin: super::Plugin<CheckWorld>, snapshot: &check::Snapshot, json: bool) -> anyhow::Result<String> {
    let findings = plugin.run(snapshot)?;
    let severity = |s: check::Severity| match s {
        check::Severity::Info => "info",
        check::Severity::Warning => "warning",
        check::Severity::Error => "error",
    };
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| serde_json::json!({"severity": severity(f.severity), "subject": f.subject, "message": f.message}))
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default()));
    }
    if findings.is_empty() {
        eprintln!("no findings");
    }
    let mut out = String::new();
    for f in &findings {
        let _ = writeln!(out, "{} {}: {}", severity(f.severity), f.subject, f.message);
    }
    Ok(out)
}

/// The lines that differ between expected and actual output, or `None`
/// when they are the same (line endings and trailing blank lines aside).
pub fn diff(expected: &str, actual: &str) -> Option<String> {
    let norm = |s: &str| -> Vec<String> {
        let mut lines: Vec<String> = s.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    };
    let (e, a) = (norm(expected), norm(actual));
    if e == a {
        return None;
    }
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (el, al) = (e.get(i), a.get(i));
        if el == al {
            continue;
        }
        if shown == DIFF_LINES {
            let _ = writeln!(out, "  ... (more differences)");
            break;
        }
        shown += 1;
        let _ = writeln!(out, "  line {}:", i + 1);
        if let Some(l) = el {
            let _ = writeln!(out, "  - {l}");
        }
        if let Some(l) = al {
            let _ = writeln!(out, "  + {l}");
        }
    }
    let _ = writeln!(out, "  ({} lines expected, {} lines actual)", e.len(), a.len());
    Some(out)
}

mod generator;
mod mapper_test;
pub mod registry;
use generator::{Calls, run_generator};
use mapper_test::run_mapper;

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_in_utc() {
        assert_eq!(timestamp_text(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp_text(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(timestamp_text(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn dates_and_bytes_render_as_postgres_prints_them() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(bytea_text(&[0, 0xab, 0x10]), "\\x00ab10");
    }

    #[test]
    fn json_lines_are_messages_only_with_message_fields() {
        let m = parse_message(3, r#"{"payload": "x", "offset": 9, "key": "k"}"#).expect("parses");
        assert_eq!(
            (m.offset, m.payload.as_deref(), m.key.as_deref()),
            (9, Some(&b"x"[..]), Some(&b"k"[..]))
        );
        let m = parse_message(3, r#"{"payload": "x", "name": "y"}"#).expect("parses");
        assert_eq!(m.payload.as_deref(), Some(&br#"{"payload": "x", "name": "y"}"#[..]));
        assert_eq!(m.offset, 3);
        assert!(parse_message(0, r#"{"payload": 5}"#).is_err());
        let m = parse_message(0, r#"{"payload_base64": "AAAAAAEK", "key_base64": null}"#).expect("parses");
        assert_eq!((m.payload.as_deref(), m.key), (Some(&[0, 0, 0, 0, 1, 10][..]), None));
        assert!(parse_message(0, r#"{"payload_base64": "not base64!"}"#).is_err());
    }

    #[test]
    fn diff_ignores_line_endings_only() {
        assert!(diff("a\r\nb\n\n", "a\nb").is_none());
        let d = diff("a\nb\n", "a\nc\n").expect("differs");
        assert!(d.contains("- b") && d.contains("+ c"), "{d}");
    }
}
