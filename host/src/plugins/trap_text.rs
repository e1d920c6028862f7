//! The reason a trap gives, as one readable text: what wasmtime says
//! happened, then what the plugin wrote to stderr. No field is printed
//! empty: wasmtime's "error while executing at wasm backtrace:" header is
//! dropped (our backtraces carry no frames, so it read `backtrace:;`), and
//! `stderr:` appears only when the plugin wrote something. What the plugin
//! wrote is tidied so its first line says what failed: a Rust panic, a
//! Python traceback, a JavaScript error each become one line.

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
        if let Some((text, next)) = python_traceback(&lines, i) {
            out.push(text);
            i = next;
            continue;
        }
        // componentize-js: the message, `Stack:`, a frame a line. The
        // innermost frame joins the message; the rest goes.
        if lines[i].trim() == "Stack:" {
            let mut j = i + 1;
            let innermost = lines
                .get(j)
                .filter(|l| l.starts_with(char::is_whitespace))
                .map(|l| l.trim());
            while j < lines.len() && lines[j].starts_with(char::is_whitespace) {
                j += 1;
            }
            match (out.last_mut(), innermost) {
                (Some(message), Some(frame)) => message.push_str(&format!(" (at {frame})")),
                _ => out.push(lines[i..j].join("\n")),
            }
            i = j;
            continue;
        }
        if lines[i] == "Redirecting call to abort() to mozalloc_abort" {
            // StarlingMonkey's way to trap: no news for the user.
            i += 1;
            continue;
        }
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

/// A Python traceback starting at `lines[i]`, as `Error: message (at File
/// "app.py", line 43, in map_one)`: the exception first, then its innermost
/// frame. Returns the text and the index of the line after it.
fn python_traceback(lines: &[&str], i: usize) -> Option<(String, usize)> {
    if lines[i].trim() != "Traceback (most recent call last):" {
        return None;
    }
    let mut j = i + 1;
    let mut innermost = None;
    while j < lines.len() && lines[j].starts_with(char::is_whitespace) {
        if lines[j].trim_start().starts_with("File ") {
            innermost = Some(lines[j].trim());
        }
        j += 1;
    }
    let exception = lines.get(j)?.trim();
    let text = match innermost {
        Some(frame) => format!("{exception} (at {frame})"),
        None => exception.to_string(),
    };
    Some((text, j + 1))
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
    fn a_python_traceback_reads_exception_first_with_its_innermost_frame() {
        // What a componentize-py mapper that raises writes.
        let stderr = "Traceback (most recent call last):\n  File \"/0/app.py\", line 83, in map_batch\n  File \"/0/app.py\", line 43, in map_one\nValueError: asked to fail on 1\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\nPython function threw an unexpected exception\n";
        assert_eq!(
            tidy_stderr(stderr),
            "ValueError: asked to fail on 1 (at File \"/0/app.py\", line 43, in map_one)\npanicked at runtime/src/lib.rs:1280:25: Python function threw an unexpected exception"
        );
        // A traceback cut off before its exception line is kept as written.
        assert_eq!(
            tidy_stderr("Traceback (most recent call last):\n  File \"a.py\", line 1, in f"),
            "Traceback (most recent call last):\n  File \"a.py\", line 1, in f"
        );
    }

    #[test]
    fn a_javascript_error_reads_with_its_innermost_frame() {
        // What a componentize-js mapper that throws writes.
        let stderr = "asked to fail on 1\nStack:\n  mapOne@app.js:29:11\n  mapBatch@app.js:73:21\n  export_mapper_0_2_0$mapBatch@/tmp/x/sources/initializer.js:288:15\nRedirecting call to abort() to mozalloc_abort\n";
        assert_eq!(tidy_stderr(stderr), "asked to fail on 1 (at mapOne@app.js:29:11)");
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
