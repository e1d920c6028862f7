//! Errors as people read them in one log line or message.

/// An error and its sources on one line, `outer: inner: innermost` (a
/// reqwest error says "error sending request" and keeps the why in its
/// sources).
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
