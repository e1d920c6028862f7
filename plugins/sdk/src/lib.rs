//! Bindings for the plugin contract in `wit/plugin.wit`, one module per world,
//! and small helpers the plugins share. A plugin implements the world's `Guest`
//! trait and exports it with the matching macro:
//!
//! ```ignore
//! struct MyMapper;
//! impl sdk::mapper::Guest for MyMapper { /* configure, map_batch */ }
//! sdk::export_mapper!(MyMapper);
//! ```

/// Bindings for the `generator-plugin` world.
pub mod generator_bindings {
    wit_bindgen::generate!({
        world: "generator-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_generator",
        default_bindings_module: "sdk::generator_bindings",
    });
}

/// Bindings for the `mapper-plugin` world.
pub mod mapper_bindings {
    wit_bindgen::generate!({
        world: "mapper-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_mapper",
        default_bindings_module: "sdk::mapper_bindings",
    });
}

/// Bindings for the `check-plugin` world.
pub mod check_bindings {
    wit_bindgen::generate!({
        world: "check-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_check",
        default_bindings_module: "sdk::check_bindings",
    });
}

pub use check_bindings::export_check;
pub use generator_bindings::export_generator;
pub use mapper_bindings::export_mapper;

pub use check_bindings::exports::wasm_stream::plugin::check;
pub use generator_bindings::exports::wasm_stream::plugin::generator;
pub use mapper_bindings::exports::wasm_stream::plugin::mapper;
pub use mapper_bindings::wasm_stream::plugin::types;

/// A mapper's one table, unnamed: the sink's `table` (what `configure`
/// returns for a mapper that writes one table).
pub fn one_table(columns: Vec<types::Column>) -> Vec<mapper::Table> {
    vec![mapper::Table {
        name: None,
        columns,
        key: None,
    }]
}

/// A table of its own, `<sink table>_<name>`, with the key an upsert sink
/// writes it by (`None` for a table only append sinks write).
pub fn named_table(name: &str, columns: Vec<types::Column>, key: Option<&[&str]>) -> mapper::Table {
    mapper::Table {
        name: Some(name.to_string()),
        columns,
        key: key.map(|k| k.iter().map(|s| s.to_string()).collect()),
    }
}

/// The outcome "these rows, in the first table" (index 0): a mapper of one
/// table answers with this.
pub fn rows(rows: Vec<Vec<types::Value>>) -> mapper::Outcome {
    mapper::Outcome::Rows(vec![mapper::TableRows { table: 0, rows }])
}

/// Rows for table `table` (its index in what `configure` returned), one
/// part of a `rows` outcome: `Outcome::Rows(vec![sdk::rows_of(0, a), sdk::rows_of(1, b)])`.
pub fn rows_of(table: u32, rows: Vec<Vec<types::Value>>) -> mapper::TableRows {
    mapper::TableRows { table, rows }
}

/// The outcome "delete the row with this key from the first table".
pub fn delete(key: Vec<types::Value>) -> mapper::Outcome {
    mapper::Outcome::Delete(vec![mapper::TableKey { table: 0, key }])
}

/// A uniformly chosen index below `len`, from `wasi:random` (which the host
/// seeds when the pipeline sets `seed`).
pub fn random_index(len: usize) -> usize {
    (wasip2::random::random::get_random_u64() % len.max(1) as u64) as usize
}

/// Parses a plugin's settings (a JSON object) into `T`, with a message that
/// names the plugin for the user.
pub fn parse_settings<T: serde::de::DeserializeOwned>(plugin: &str, settings: &str) -> Result<T, String> {
    serde_json::from_str(settings).map_err(|e| format!("{plugin}: invalid settings: {e}"))
}

/// Settings of a generator that picks one value of a list per message.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PickSettings {
    /// Replaces the built-in list of values.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Another name for the field (an Avro schema's field names are
    /// identifiers: `{"field": "language"}`).
    #[serde(default)]
    pub field: Option<String>,
}

/// A generator of `{"<field>": "<random value>"}` messages, like the old demo's.
pub struct PickOne {
    field: String,
    values: Vec<String>,
}

impl PickOne {
    /// Configures from the plugin's settings: `{"values": [...]}` replaces
    /// `defaults`, `{"field": "..."}` the field's name.
    pub fn configure(plugin: &str, field: &'static str, defaults: &[&str], settings: &str) -> Result<Self, String> {
        let parsed: PickSettings = parse_settings(plugin, settings)?;
        let values = match parsed.values {
            Some(v) if v.is_empty() => return Err(format!("{plugin}: settings.values must not be empty")),
            Some(v) => v,
            None => defaults.iter().map(|s| s.to_string()).collect(),
        };
        let field = match parsed.field {
            Some(f) if f.is_empty() => return Err(format!("{plugin}: settings.field must not be empty")),
            Some(f) => f,
            None => field.to_string(),
        };
        Ok(Self { field, values })
    }

    /// Up to `max` messages; the generator never runs out.
    pub fn next(&self, max: u32) -> Vec<generator::Message> {
        (0..max)
            .map(|_| {
                let value = &self.values[random_index(self.values.len())];
                let payload = serde_json::json!({ self.field.as_str(): value })
                    .to_string()
                    .into_bytes();
                generator::Message { key: None, payload }
            })
            .collect()
    }
}

/// Defines and exports a [`PickOne`] generator plugin:
/// `sdk::pick_one_generator!(Langs, "langs", "Favorite Language", LANGUAGES);`
#[macro_export]
macro_rules! pick_one_generator {
    ($ty:ident, $plugin:literal, $field:literal, $defaults:expr) => {
        static STATE: ::std::sync::OnceLock<$crate::PickOne> = ::std::sync::OnceLock::new();

        struct $ty;

        impl $crate::generator::Guest for $ty {
            fn configure(settings: String) -> Result<(), String> {
                let pick = $crate::PickOne::configure($plugin, $field, $defaults, &settings)?;
                STATE
                    .set(pick)
                    .map_err(|_| format!("{}: configure called twice", $plugin))
            }

            fn next(max: u32) -> Vec<$crate::generator::Message> {
                STATE.get().map(|p| p.next(max)).unwrap_or_default()
            }
        }

        $crate::export_generator!($ty);
    };
}
