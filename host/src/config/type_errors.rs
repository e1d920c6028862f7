//! serde's "invalid type" and "invalid value" errors said what Rust wanted
//! (`invalid type: string "1s", expected u64`), not which key or what to
//! write. Here such an error gets the key's full path (found from the error's
//! span in the parsed document: `generators.langs.interval_ms`, an entry of
//! an array of tables named by its `name`) and an example of the right form,
//! for every key, from the type serde expected.

use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The message for a serde type or value error at `span` of `text`, or
/// `None` when `message` is another kind of error.
pub fn explain(text: &str, span: Range<usize>, message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        // `mode = "apend"`: the key, the choices, and one written out.
        let path = key_path(text, &span)?;
        let key = path.rsplit('.').next().unwrap_or(&path);
        let first = rest.split('`').nth(3).map(|v| format!(", e.g. {key} = \"{v}\""));
        return Some(format!("{path}: unknown value {rest}{}", first.unwrap_or_default()));
    }
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let path = key_path(text, &span)?;
    let key = path.rsplit('.').next().unwrap_or(&path).to_string();
    Some(format!(
        "{path}: expected {}, not {found}",
        wanted(&key, expected.trim(), found)
    ))
}

/// What to write, with an example, from serde's name of the expected type.
fn wanted(key: &str, expected: &str, found: &str) -> String {
    let integer = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ]
    .contains(&expected)
        || expected.contains("integer");
    if integer {
        let (what, example) = if key.ends_with("_ms") {
            ("a whole number of milliseconds", "1000")
        } else if key.ends_with("_bytes") {
            ("a whole number of bytes", "1048576")
        } else {
            ("a whole number", "3")
        };
        let quoted = if found.starts_with("string") {
            " (no quotes)"
        } else {
            ""
        };
        return format!("{what}, e.g. {key} = {example}{quoted}");
    }
    if expected.contains("string") {
        let bare = found
            .split_once(' ')
            .map_or(found, |(_, v)| v)
            .trim_matches(|c| c == '`' || c == '"');
        let example = if bare.is_empty() || bare.contains(char::is_whitespace) {
            "..."
        } else {
            bare
        };
        return format!("a string in quotes, e.g. {key} = \"{example}\"");
    }
    if expected.contains("bool") {
        return format!("true or false, e.g. {key} = true");
    }
    if ["generators", "sinks", "topics", "checks"].contains(&key) {
        return format!("[[{key}]] tables, one per entry");
    }
    if expected.contains("sequence") || expected.contains("array") {
        return format!("a list in brackets, e.g. {key} = [\"a\", \"b\"]");
    }
    if expected.starts_with("f32") || expected.starts_with("f64") || expected.contains("float") {
        return format!("a number, e.g. {key} = 0.5");
    }
    if expected.starts_with("struct") || expected.contains("map") || expected.contains("table") {
        return format!("a table: a [{key}] section, or {key} = {{ ... }}");
    }
    // An enum or a type of ours: serde's words are the best we have.
    expected.to_string()
}

/// The dotted path of the key whose value (or name) holds `span`.
fn key_path(text: &str, span: &Range<usize>) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(doc.get_ref(), span, &mut path).then(|| path.join("."))
}

fn find_in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        if contains(&key.span(), span) || contains(&value.span(), span) {
            path.push(key.get_ref().to_string());
            find_in_value(value, span, path);
            return true;
        }
    }
    // Tables written as `[section]` headers: their spans need not cover
    // their keys, so look inside each as well.
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if find_in_value(value, span, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Descends into a table or array value; false when nothing inside holds `span`.
fn find_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, span, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let inside = contains(&item.span(), span);
                let before = path.len();
                path.push(element_name(item).unwrap_or_else(|| i.to_string()));
                if inside {
                    find_in_value(item, span, path);
                    return true;
                }
                if find_in_value(item, span, path) {
                    return true;
                }
                path.truncate(before);
            }
            false
        }
        _ => false,
    }
}

/// The `name` of an array-of-tables entry (`[[generators]] name = "langs"`).
fn element_name(item: &Spanned<DeValue<'_>>) -> Option<String> {
    match item.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| match (k.get_ref().as_ref(), v.get_ref()) {
            ("name", DeValue::String(s)) => Some(s.to_string()),
            _ => None,
        }),
        _ => None,
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `toml` says about `text` deserialized into `T`, explained.
    fn explained<T: serde::de::DeserializeOwned>(text: &str) -> String {
        let e = toml::from_str::<T>(text).err().expect("the text is wrong");
        explain(text, e.span().expect("span"), e.message().trim()).unwrap_or_else(|| e.message().to_string())
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Doc {
        generators: Vec<Gen>,
        #[serde(default)]
        sinks: Vec<Sink>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Gen {
        name: String,
        interval_ms: Option<u64>,
        enabled: Option<bool>,
        #[serde(default)]
        limits: Limits,
    }
    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Limits {
        memory_limit_bytes: Option<usize>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sink {
        name: String,
        table: String,
        key: Option<Vec<String>>,
    }

    #[test]
    fn a_string_for_milliseconds_names_the_key_path_and_the_form() {
        let text = "[[generators]]\nname = \"a\"\n\n[[generators]]\nname = \"langs\"\ninterval_ms = \"1s\"\n";
        assert_eq!(
            explained::<Doc>(text),
            "generators.langs.interval_ms: expected a whole number of milliseconds, e.g. interval_ms = 1000 (no quotes), not string \"1s\""
        );
    }

    #[test]
    fn keys_of_nested_tables_and_other_types_are_explained() {
        let text = "[[generators]]\nname = \"g\"\nenabled = \"yes\"\n";
        assert!(
            explained::<Doc>(text).starts_with("generators.g.enabled: expected true or false"),
            "{}",
            explained::<Doc>(text)
        );
        let text = "[[generators]]\nname = \"g\"\n[generators.limits]\nmemory_limit_bytes = -1\n";
        let e = explained::<Doc>(text);
        assert!(
            e.starts_with("generators.g.limits.memory_limit_bytes: expected a whole number of bytes"),
            "{e}"
        );
        let text = "generators = []\n[[sinks]]\nname = \"s\"\ntable = 5\n";
        let e = explained::<Doc>(text);
        assert_eq!(
            e,
            "sinks.s.table: expected a string in quotes, e.g. table = \"5\", not integer `5`"
        );
        let text = "generators = []\n[[sinks]]\nname = \"s\"\ntable = \"t\"\nkey = \"id\"\n";
        let e = explained::<Doc>(text);
        assert!(e.starts_with("sinks.s.key: expected a list in brackets"), "{e}");
    }

    #[test]
    fn an_entry_without_a_name_is_named_by_its_index() {
        let text = "[[generators]]\ninterval_ms = true\nname = \"x\"\n";
        let e = explained::<Doc>(text);
        assert!(e.starts_with("generators.x.interval_ms"), "{e}");
        let text = "generators = [{ interval_ms = \"2\", name = 3 }]\n";
        let e = explained::<Doc>(text);
        assert!(e.starts_with("generators.0."), "{e}");
    }

    #[test]
    fn an_unknown_choice_names_the_key_and_writes_one_out() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Pg {
            postgres: Tls,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Tls {
            tls: Mode,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(rename_all = "kebab-case")]
        enum Mode {
            Require,
            Disable,
        }
        let e = explained::<Pg>("[postgres]\ntls = \"maybe\"\n");
        assert_eq!(
            e,
            "postgres.tls: unknown value `maybe`, expected `require` or `disable`, e.g. tls = \"require\""
        );
    }

    #[test]
    fn other_errors_are_left_alone() {
        assert_eq!(explain("a = 1", 0..1, "missing field `name`"), None);
    }
}
