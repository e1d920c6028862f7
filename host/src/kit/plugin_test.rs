//! `host plugin test`: loads one component, reads its world, runs it by the
//! kind's module (generator, mapper_test, check_test) and compares the
//! output with `--expect`.

use super::check_test::{read_snapshot, run_check};
use super::generator::{Calls, run_generator};
use super::kind::{Kind, world_of};
use super::mapper_test::run_mapper;
use super::messages::read_messages;
use super::{Failure, registry, unusable};
use crate::config::{
    DEFAULT_CALL_TIMEOUT_MS, DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MEMORY_LIMIT_BYTES, PluginConfig, PluginLimits,
};
use crate::plugins::{
    CACHE_WRITE_WAIT, CheckWorld, Compiled, GeneratorWorld, MapperWorld, PluginError, Runtime, World, content_hash,
    finish_cache_writes,
};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Most differences `--expect` prints.
const DIFF_LINES: usize = 20;

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

pub(super) fn test(args: &TestArgs) -> Result<u8, Failure> {
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
    if !finish_cache_writes(CACHE_WRITE_WAIT) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ignores_line_endings_only() {
        assert!(diff("a\r\nb\n\n", "a\nb").is_none());
        let d = diff("a\nb\n", "a\nc\n").expect("differs");
        assert!(d.contains("- b") && d.contains("+ c"), "{d}");
    }
}
