//! What a plugin file that does not load looks like, so its error can give
//! the hint that fits it: an empty or cut-short file (still being written,
//! or a build that stopped), a core module, a file that is not WebAssembly,
//! or a Python or JavaScript component (built with componentize-py or
//! componentize-js, whose fix is their build command, not cargo's).

/// The 8 bytes a WebAssembly component starts with (magic, version 0x0d, layer 1).
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
/// Magic and version 1 of a core module.
const CORE_HEADER: &[u8] = b"\0asm\x01\0\0\0";

/// The language a component was written in, from the tool's traces in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Javascript,
    /// Rust, or a language we do not tell apart.
    Other,
}

impl Lang {
    /// componentize-py embeds its own module and libpython (both early in the
    /// file, so a truncated one is still told); componentize-js embeds
    /// StarlingMonkey (in the second half of the file).
    pub fn of(bytes: &[u8]) -> Self {
        if contains(bytes, b"componentize_py") || contains(bytes, b"libpython") {
            Lang::Python
        } else if contains(bytes, b"ComponentizeJS") || contains(bytes, b"StarlingMonkey") {
            Lang::Javascript
        } else {
            Lang::Other
        }
    }

    /// How to build a component of `world` (`mapper-plugin`, ...) in this language.
    pub fn build_command(self, world: &str) -> String {
        match self {
            Lang::Python => format!("`componentize-py -d wit -w {world} componentize app -o NAME.wasm`"),
            Lang::Javascript => format!(
                "`componentize-js app.js --wit wit --world-name {world} --disable http fetch-event --out NAME.wasm` (`npm run build` in a `host plugin new` project)"
            ),
            Lang::Other => "`cargo build --target wasm32-wasip2 --release`".to_string(),
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Lang::Python => "a Python component (componentize-py)",
            Lang::Javascript => "a JavaScript component (componentize-js)",
            Lang::Other => "a component",
        }
    }
}

/// Why the bytes did not compile, and what to do: `(what, hint)`. `reason`
/// is the compiler's message.
pub fn not_a_component(bytes: &[u8], reason: &str) -> (String, String) {
    if bytes.is_empty() {
        return (
            "the file is empty".into(),
            "it is still being written, or its build failed: build the plugin again; a running host loads it once the complete file is saved".into(),
        );
    }
    if !bytes.starts_with(b"\0asm") {
        let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        return (
            format!("the file is not WebAssembly (it starts with {start:?})"),
            "point the plugin path at the .wasm file the build writes (a Rust plugin's is target/wasm32-wasip2/release/NAME.wasm)".into(),
        );
    }
    if bytes.starts_with(CORE_HEADER) {
        return (
            "it is a core WebAssembly module, and plugins are components".into(),
            "build the plugin with `cargo build --target wasm32-wasip2 --release` (wasm32-wasip1 and wasm32-unknown-unknown make core modules), or wrap a core module with `wasm-tools component new`".into(),
        );
    }
    let lang = Lang::of(bytes);
    if bytes.starts_with(COMPONENT_HEADER) && looks_cut_short(reason) {
        return (
            format!("{} cut short at {} bytes: {reason}", lang.tool(), bytes.len()),
            format!(
                "the file is incomplete: it is still being written or copied, or its build stopped; build it again ({}); a running host loads it once the complete file is saved",
                any_world(lang)
            ),
        );
    }
    (
        format!("{} that does not validate: {reason}", lang.tool()),
        format!(
            "build it again, against the wit/plugin.wit of this host: {}",
            any_world(lang)
        ),
    )
}

/// The hint of a component that exports another world than the one its
/// place in the pipeline file needs (`world`, e.g. `mapper-plugin`).
pub fn wrong_world_hint(bytes: &[u8], world: &str) -> String {
    match Lang::of(bytes) {
        Lang::Other => format!(
            "is it configured in the wrong section of the pipeline file? Otherwise build it for the {world} world"
        ),
        lang => format!(
            "is it configured in the wrong section of the pipeline file? Otherwise build it for the {world} world: {}",
            lang.build_command(world)
        ),
    }
}

/// The build command when the world is not known.
fn any_world(lang: Lang) -> String {
    match lang {
        Lang::Other => lang.build_command(""),
        _ => format!(
            "{}, WORLD being generator-plugin, mapper-plugin or check-plugin",
            lang.build_command("WORLD")
        ),
    }
}

/// Whether the compiler's message says the file ends before its contents do.
fn looks_cut_short(reason: &str) -> bool {
    ["out of bounds", "unexpected end", "end-of-file"]
        .iter()
        .any(|s| reason.contains(s))
}

fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(body: &[u8]) -> Vec<u8> {
        let mut b = COMPONENT_HEADER.to_vec();
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn each_kind_of_file_gets_its_own_hint() {
        let (what, hint) = not_a_component(b"", "unexpected end-of-file (at offset 0x0)");
        assert!(
            what.contains("empty") && hint.contains("still being written"),
            "{what} / {hint}"
        );

        let (what, hint) = not_a_component(b"hello\n", "magic header not detected");
        assert!(what.contains("not WebAssembly") && what.contains("hello"), "{what}");
        assert!(hint.contains(".wasm file the build writes"), "{hint}");

        let (what, hint) = not_a_component(CORE_HEADER, "attempted to parse a wasm module with a component parser");
        assert!(what.contains("core WebAssembly module"), "{what}");
        assert!(hint.contains("wasm32-wasip2"), "{hint}");

        let rust = component(b"rustc");
        let (what, hint) = not_a_component(&rust, "section range 10..99 is out of bounds (bound = 13)");
        assert!(what.contains("cut short at 13 bytes"), "{what}");
        assert!(hint.contains("incomplete") && hint.contains("cargo build"), "{hint}");
    }

    #[test]
    fn a_cut_short_python_or_javascript_component_gets_its_build_command() {
        let py = component(b"..componentize_py..libpython3.12..");
        let (what, hint) = not_a_component(&py, "section range 1..9 is out of bounds");
        assert!(
            what.contains("Python component") && what.contains("cut short"),
            "{what}"
        );
        assert!(hint.contains("componentize-py") && !hint.contains("cargo"), "{hint}");

        let js = component(b"..StarlingMonkey..");
        let (what, hint) = not_a_component(&js, "unexpected end-of-file");
        assert!(what.contains("JavaScript component"), "{what}");
        assert!(hint.contains("componentize-js") && !hint.contains("cargo"), "{hint}");
    }

    #[test]
    fn a_component_that_is_whole_but_invalid_is_not_called_cut_short() {
        let (what, hint) = not_a_component(&component(b"x"), "type mismatch");
        assert!(
            what.contains("does not validate") && !what.contains("cut short"),
            "{what}"
        );
        assert!(hint.contains("build it again"), "{hint}");
    }

    #[test]
    fn the_wrong_world_hint_names_the_world_and_the_tool() {
        let py = component(b"componentize_py");
        let hint = wrong_world_hint(&py, "mapper-plugin");
        assert!(hint.contains("-w mapper-plugin"), "{hint}");
        let hint = wrong_world_hint(&component(b"rustc"), "generator-plugin");
        assert!(
            hint.contains("wrong section") && hint.contains("generator-plugin"),
            "{hint}"
        );
    }
}
