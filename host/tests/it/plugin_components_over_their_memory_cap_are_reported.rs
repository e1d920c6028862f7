//! `memory_limit_bytes` bounds all of an instance's memories and tables
//! together: a working check plugin with one more core module appended (48
//! memories of 1 MiB each, or a table of 2^24 elements: each part under the
//! 32 MiB cap, together over it) fails to instantiate; `host check` reports
//! the plugin, names the limit, and the other checks still run.
use crate::support::{audit, common};

use audit::{check_entry, findings_about, json_report, produce_json, sink_pipeline};
use common::{create_topic, plugin, unique};
use std::path::PathBuf;
use std::time::Duration;
use wasm_encoder::{
    Component, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection, RefType, TableSection,
    TableType,
};
use wasmparser::{Chunk, Parser, Payload};

/// How many core modules the component defines at its top level: the index
/// the appended module gets.
fn top_level_modules(bytes: &[u8]) -> u32 {
    let (mut parser, mut offset, mut modules) = (Parser::new(0), 0, 0);
    loop {
        let Chunk::Parsed { consumed, payload } = parser.parse(&bytes[offset..], true).expect("a valid component")
        else {
            panic!("the whole component is in memory");
        };
        offset += consumed;
        match payload {
            // A nested module or component's bytes follow its header: step over them.
            Payload::ModuleSection { unchecked_range, .. } => {
                modules += 1;
                offset += unchecked_range.len();
            }
            Payload::ComponentSection { unchecked_range, .. } => offset += unchecked_range.len(),
            Payload::End(_) => return modules,
            _ => {}
        }
    }
}

/// The check plugin with `module` appended and instantiated, written to a file.
fn with_extra_module(module: &Module) -> PathBuf {
    let mut bytes = std::fs::read(plugin("hostile_check")).expect("built hostile_check.wasm");
    let index = top_level_modules(&bytes);
    let mut extra = Component::new();
    extra.section(&ModuleSection(module));
    let mut instances = InstanceSection::new();
    instances.instantiate(index, Vec::<(&str, ModuleArg)>::new());
    extra.section(&instances);
    // Sections follow the 8-byte preamble; appended ones extend the component.
    bytes.extend_from_slice(&extra.finish()[8..]);
    let path = std::env::temp_dir().join(format!("{}.wasm", unique("over_cap")));
    std::fs::write(&path, bytes).expect("write component");
    path
}

fn memories(count: usize, pages: u64) -> Module {
    let mut section = MemorySection::new();
    for _ in 0..count {
        section.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut module = Module::new();
    module.section(&section);
    module
}

fn table(elements: u64) -> Module {
    let mut section = TableSection::new();
    section.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: elements,
        maximum: None,
        table64: false,
        shared: false,
    });
    let mut module = Module::new();
    module.section(&section);
    module
}

fn entry(name: &str, path: &std::path::Path) -> String {
    format!(
        "\n[[checks]]\nname = \"{name}\"\nplugin = \"{}\"\nlimits = {{ memory_limit_bytes = 33554432 }}\n",
        path.display()
    )
}

#[test]
fn many_memories_and_a_huge_table_are_refused_and_reported() {
    let (topic, table_name) = (unique("overcap"), unique("overcap_rows"));
    create_topic(&topic, 1);
    produce_json(&topic, 0..3);
    let many = with_extra_module(&memories(48, 16));
    let huge = with_extra_module(&table(1 << 24));
    // The same append with little in it loads and runs: the shape is fine.
    let small = with_extra_module(&memories(4, 16));
    let checks = [
        entry("many-memories", &many),
        entry("huge-table", &huge),
        entry("small", &small),
        check_entry("sync-audit", "sync_audit", ""),
    ]
    .concat();
    let path = sink_pipeline(&topic, &table_name, &checks);
    let p = path.to_str().expect("utf-8");

    let (code, report) = json_report(&["check", p, "sync", "--topic", &topic], Duration::from_secs(120));
    assert_eq!(code, 1, "{report:#}");
    for (name, what) in [
        ("many-memories", "growing a linear memory by 1048576 bytes"),
        ("huge-table", "growing a table by 134217728 bytes"),
    ] {
        let about = findings_about(&report, &format!("check {name}"));
        assert_eq!(about.len(), 1, "{report:#}");
        assert_eq!(about[0]["severity"], "error", "{report:#}");
        let message = about[0]["message"].as_str().expect("message");
        assert!(message.contains(what), "{message}");
        assert!(
            message.contains("over 33554432 (limits.memory_limit_bytes)"),
            "{message}"
        );
    }
    let fine = findings_about(&report, "hostile-check");
    assert_eq!(fine.len(), 1, "{report:#}");
    assert_eq!(fine[0]["message"], "saw 1 partitions", "{report:#}");
    assert_eq!(findings_about(&report, &format!("{topic}/0")).len(), 1, "{report:#}");
    for file in [many, huge, small] {
        let _ = std::fs::remove_file(file);
    }
}
