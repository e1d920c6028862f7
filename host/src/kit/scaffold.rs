//! `host plugin new`: writes a standalone plugin project from the templates
//! embedded at build time (`host/templates/<lang>/<kind>/` and
//! `host/templates/<lang>/common/`), plus `wit/plugin.wit` exactly as this
//! host was built with it, so the project's contract cannot drift from the
//! host's.
//!
//! Template files keep their relative paths, lose a trailing `.tmpl`, and
//! have `{{name}}`, `{{snake}}`, `{{world}}` and `{{kind}}` replaced.

use super::kind::Kind;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// The contract this host was built with.
pub const PLUGIN_WIT: &str = include_str!("../../../wit/plugin.wit");

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    Generator,
    Mapper,
    Check,
}

impl From<NewKind> for Kind {
    fn from(k: NewKind) -> Self {
        match k {
            NewKind::Generator => Kind::Generator,
            NewKind::Mapper => Kind::Mapper,
            NewKind::Check => Kind::Check,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Javascript,
}

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Javascript => "javascript",
        }
    }
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// What the plugin does.
    #[arg(value_enum)]
    pub kind: NewKind,
    /// The plugin's name: letters, digits, `-` and `_`, starting with a letter
    /// (e.g. `my-sensor`); the project folder is named after it.
    pub name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The folder in which the project folder is made (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One file of a new project: its path inside the project, and its text.
#[derive(Debug, PartialEq, Eq)]
pub struct ProjectFile {
    pub path: PathBuf,
    pub text: String,
}

/// Checks a plugin name; the message says what is allowed.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter, at most 64 characters (e.g. `my-sensor`)"
        );
    }
    Ok(())
}

/// `my-sensor` -> `my_sensor`.
pub fn snake_case(name: &str) -> String {
    name.replace('-', "_")
}

/// A kind's part of BUILDING.md, under `host/templates/<lang>/<kind>/`.
const KIND_NOTES: &str = "BUILDING.notes.md";

/// The files of a new project, without writing anything.
pub fn render(kind: Kind, lang: Lang, name: &str) -> anyhow::Result<Vec<ProjectFile>> {
    check_name(name)?;
    let snake = snake_case(name);
    let prefixes = [
        format!("{}/{}/", lang.dir(), kind.name()),
        format!("{}/common/", lang.dir()),
    ];
    // What BUILDING.md says of this kind only (`{{kind_notes}}`): a kind's
    // `BUILDING.notes.md`, which is not a project file itself.
    let notes_path = format!("{}{KIND_NOTES}", prefixes[0]);
    let kind_notes = embedded::TEMPLATES
        .iter()
        .find(|(path, _)| *path == notes_path)
        .map_or("", |(_, text)| text.trim_end());
    let mut files: Vec<ProjectFile> = Vec::new();
    for (path, text) in embedded::TEMPLATES {
        let Some(relative) = prefixes.iter().find_map(|p| path.strip_prefix(p.as_str())) else {
            continue;
        };
        if relative == KIND_NOTES {
            continue;
        }
        let relative = relative.strip_suffix(".tmpl").unwrap_or(relative);
        let fill = |s: &str| {
            s.replace("{{kind_notes}}", kind_notes)
                .replace("{{name}}", name)
                .replace("{{snake}}", &snake)
                .replace("{{world}}", kind.world())
                .replace("{{kind}}", kind.name())
        };
        let path = PathBuf::from(fill(relative));
        // A kind's own file wins over a common one of the same path.
        if files.iter().any(|f| f.path == path) {
            continue;
        }
        files.push(ProjectFile { path, text: fill(text) });
    }
    if files.is_empty() {
        bail!(
            "this host has no {} template for a {}: it was built without host/templates/{}/{}",
            lang.dir(),
            kind.name(),
            lang.dir(),
            kind.name()
        );
    }
    files.retain(|f| f.path != Path::new("wit/plugin.wit"));
    files.push(ProjectFile {
        path: PathBuf::from("wit/plugin.wit"),
        text: PLUGIN_WIT.to_string(),
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Writes the project into `dir/name`; refuses a folder that exists and is not empty.
pub fn write(kind: Kind, lang: Lang, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let files = render(kind, lang, name)?;
    let root = dir.join(name);
    if root.exists() {
        let empty = root.is_dir()
            && std::fs::read_dir(&root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; nothing was written\n  hint: choose another name or --dir, or remove that folder",
                root.display()
            );
        }
    }
    for f in &files {
        let path = root.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &f.text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root)
}

pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot tell the current folder")?,
    };
    let kind = Kind::from(args.kind);
    let root = write(kind, args.lang, &args.name, &dir)?;
    println!(
        "Created {} plugin {:?} ({}) in {}",
        kind.name(),
        args.name,
        args.lang.dir(),
        root.display()
    );
    println!("Next: read {}", root.join("README.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-sensor", "gen_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "2x", "a b", "x/y", "a-", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_rust_kind_renders_with_the_hosts_wit_and_no_placeholder_left() {
        for kind in Kind::ALL {
            let files = render(kind, Lang::Rust, "my-plugin").expect("renders");
            let wit = files
                .iter()
                .find(|f| f.path == Path::new("wit/plugin.wit"))
                .expect("wit");
            assert_eq!(wit.text, PLUGIN_WIT);
            for f in &files {
                for placeholder in ["{{name}}", "{{snake}}", "{{world}}", "{{kind}}"] {
                    assert!(
                        !f.text.contains(placeholder),
                        "{} keeps {placeholder}",
                        f.path.display()
                    );
                }
                assert!(!f.path.to_string_lossy().ends_with(".tmpl"));
            }
            assert!(files.iter().any(|f| f.path == Path::new("Cargo.toml")));
            assert!(files.iter().any(|f| f.path == Path::new(".cargo/config.toml")));
        }
    }

    #[test]
    fn each_building_md_says_what_fits_its_kind() {
        for lang in [Lang::Rust, Lang::Python, Lang::Javascript] {
            for kind in Kind::ALL {
                let files = render(kind, lang, "my-plugin").expect("renders");
                assert!(!files.iter().any(|f| f.path.to_string_lossy().contains("notes")));
                let building = &files
                    .iter()
                    .find(|f| f.path == Path::new("BUILDING.md"))
                    .expect("BUILDING.md")
                    .text;
                let at = format!("{} {}", lang.dir(), kind.name());
                assert!(!building.contains("{{"), "{at}: a placeholder is left");
                assert!(building.contains("state starts over"), "{at}");
                let says = |text: &str| building.contains(text);
                assert_eq!(says("replays the same messages"), kind == Kind::Generator, "{at}");
                assert_eq!(says("--calls"), kind == Kind::Generator, "{at}");
                assert_eq!(
                    says("memory_limit_bytes"),
                    kind == Kind::Mapper && lang == Lang::Javascript,
                    "{at}"
                );
                assert_eq!(says("headline"), kind == Kind::Check, "{at}");
            }
        }
    }
}
