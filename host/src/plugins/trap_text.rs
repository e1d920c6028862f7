//! The reason a trap gives, as one readable text: what wasmtime says
//! happened, then what the plugin wrote to stderr. No field is printed
//! empty: wasmtime's "error while executing at wasm backtrace:" header is
//! dropped (our backtraces carry no frames, so it read `backtrace:;`), and
//! `stderr:` appears only when the plugin wrote something.

/// How wasmtime's `WasmBacktrace` starts when displayed.
const BACKTRACE_HEADER: &str = "error while executing at wasm backtrace";

/// The reason of a trapped call: the error's causes without the backtrace
/// header, then the plugin's stderr, tidied.
pub fn reason(e: &wasmtime::Error, stderr: &[u8]) -> String {
    // The backtrace is a context of the error, not an error of the chain:
    // it is told apart by its header (frames or none, it is left out).
    let causes: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| !c.trim_start().starts_with(BACKTRACE_HEADER))
        .filter_map(|c| first_meaningful_line(&c))
        .collect();
    join(&causes.join(": "), &tidy_stderr(&String::from_utf8_lossy(stderr)))
}

/// `what` and the stderr text, leaving out whichever is empty.
pub fn join(what: &str, stderr: &str) -> String {
    match (what.is_empty(), stderr.is_empty()) {
        (false, false) => format!("{what}; stderr: {stderr}"),
        (false, true) => what.to_string(),
        (true, false) => format!("stderr: {stderr}"),
        (true, true) => "the plugin trapped without saying why".to_string(),
    }
}

/// The first line of a cause that says something (not the backtrace header).
fn first_meaningful_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(BACKTRACE_HEADER))
        .map(str::to_string)
}

/// A plugin's stderr, trimmed; a Rust panic becomes `panicked at FILE:
/// MESSAGE` on one line (the message first matters: logs show a reason's
/// first line), and the advice to set RUST_BACKTRACE (a plugin cannot) goes.
pub fn tidy_stderr(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        match panic_location(lines[i]) {
            Some(at) if i + 1 < lines.len() => {
                out.push(format!("panicked at {at}: {}", lines[i + 1].trim()));
                i += 2;
            }
            Some(at) => {
                out.push(format!("panicked at {at}"));
                i += 1;
            }
            None => {
                out.push(lines[i].to_string());
                i += 1;
            }
        }
    }
    out.join("\n")
}

/// `FILE:LINE:COL` of a Rust panic header: `thread 'x' (1) panicked at FILE:LINE:COL:`.
fn panic_location(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("thread '")?;
    let (_, at) = rest.split_once(" panicked at ")?;
    Some(at.strip_suffix(':').unwrap_or(at))
}

/// `1 call`, `2 calls`: a count and its noun, in the right number.
pub fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("{count} {one}")
    } else {
        format!("{count} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_reads_as_one_line_with_its_message() {
        let stderr = "thread '<unnamed>' (1) panicked at fixtures/hostile-mapper/src/lib.rs:39:19:\nhostile-mapper: asked to trap at offset 1\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            tidy_stderr(stderr),
            "panicked at fixtures/hostile-mapper/src/lib.rs:39:19: hostile-mapper: asked to trap at offset 1"
        );
    }

    #[test]
    fn other_stderr_is_kept_trimmed() {
        assert_eq!(tidy_stderr("  \n Traceback:\n  x\n\n"), " Traceback:\n  x");
        assert_eq!(tidy_stderr("\n \n"), "");
    }

    #[test]
    fn no_field_is_empty() {
        assert_eq!(join("wasm trap: x", ""), "wasm trap: x");
        assert_eq!(join("", "oops"), "stderr: oops");
        assert_eq!(join("wasm trap: x", "oops"), "wasm trap: x; stderr: oops");
        assert!(!join("", "").is_empty());
    }

    #[test]
    fn the_backtrace_header_without_frames_is_left_out() {
        let e = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached)
            .context("error while executing at wasm backtrace:\n");
        assert_eq!(reason(&e, b""), "wasm trap: wasm `unreachable` instruction executed");
        let text = reason(&e, b"thread 'main' panicked at src/lib.rs:3:5:\nboom\n");
        assert_eq!(
            text,
            "wasm trap: wasm `unreachable` instruction executed; stderr: panicked at src/lib.rs:3:5: boom"
        );
        assert!(!text.contains("backtrace"), "{text}");
    }

    #[test]
    fn plurals_agree_with_the_count() {
        assert_eq!(plural(1, "call", "calls"), "1 call");
        assert_eq!(plural(0, "call", "calls"), "0 calls");
        assert_eq!(plural(2, "message", "messages"), "2 messages");
    }
}
