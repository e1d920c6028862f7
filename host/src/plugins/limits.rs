//! What one plugin instance may allocate, in total.
//!
//! wasmtime's [`wasmtime::StoreLimits`] caps each linear memory on its own,
//! leaves tables unbounded and allows 10,000 instances, memories and tables:
//! with multi-memory on, a component could hold 10,000 memories of
//! `memory_limit_bytes` each, or grow a table by 2^31 elements. Here
//! `memory_limit_bytes` bounds the sum of every linear memory and table of
//! the store (a table element counted as [`TABLE_ELEMENT_BYTES`]), and the
//! counts of instances, memories and tables are capped well above what real
//! components use (componentize-py's and componentize-js's have tens).

/// Core and component instances one store may create.
pub const MAX_INSTANCES: usize = 1_000;
/// Linear memories one store may create (a Rust component has one or two).
pub const MAX_MEMORIES: usize = 100;
/// Tables one store may create.
pub const MAX_TABLES: usize = 1_000;
/// What a table element costs the host (a function reference is a pointer).
pub const TABLE_ELEMENT_BYTES: usize = 8;

/// A store went over `memory_limit_bytes`, all memories and tables together.
#[derive(Debug, thiserror::Error)]
#[error(
    "growing a {what} by {more_bytes} bytes would bring the instance's memories and tables to {total_bytes} bytes, over {limit_bytes} (limits.memory_limit_bytes)"
)]
pub struct OverMemoryLimit {
    pub what: &'static str,
    pub more_bytes: usize,
    pub total_bytes: usize,
    pub limit_bytes: usize,
}

/// A [`wasmtime::ResourceLimiter`] that sums memories and tables, and keeps
/// the high-water mark for the `plugin_memory_high_water_bytes` gauge.
pub struct SandboxLimits {
    limit_bytes: usize,
    used_bytes: usize,
    peak_bytes: usize,
}

impl SandboxLimits {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            used_bytes: 0,
            peak_bytes: 0,
        }
    }

    /// The most the instance's memories and tables held together.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    fn grow(&mut self, what: &'static str, more_bytes: usize) -> wasmtime::Result<bool> {
        let total_bytes = self.used_bytes.saturating_add(more_bytes);
        if total_bytes > self.limit_bytes {
            // An error, not `Ok(false)`: the guest traps instead of handling
            // a failed grow, and the host reports the limit (the plugin is
            // started afresh before its next call).
            return Err(wasmtime::Error::new(OverMemoryLimit {
                what,
                more_bytes,
                total_bytes,
                limit_bytes: self.limit_bytes,
            }));
        }
        self.used_bytes = total_bytes;
        self.peak_bytes = self.peak_bytes.max(total_bytes);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for SandboxLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow("linear memory", desired.saturating_sub(current))
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let more = desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", more)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        Component, ComponentExportKind, ComponentInstanceSection, InstanceSection, MemorySection, MemoryType, Module,
        ModuleArg, ModuleSection, NestedComponentSection, RefType, TableSection, TableType,
    };

    /// A component that instantiates `module` `copies` times and exports nothing.
    fn inner(module: &Module, copies: usize) -> Component {
        let mut component = Component::new();
        component.section(&ModuleSection(module));
        let mut instances = InstanceSection::new();
        for _ in 0..copies {
            instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        }
        component.section(&instances);
        component
    }

    fn component_of(module: &Module, copies: usize) -> Vec<u8> {
        inner(module, copies).finish()
    }

    /// A component that instantiates `inner(module, copies)` twice: the way
    /// past the validator's own limits (1,000 instances, 100 memories per
    /// module), which count one component or module at a time.
    fn twice(module: &Module, copies: usize) -> Vec<u8> {
        let mut outer = Component::new();
        outer.section(&NestedComponentSection(&inner(module, copies)));
        let mut instances = ComponentInstanceSection::new();
        for _ in 0..2 {
            instances.instantiate(0, Vec::<(&str, ComponentExportKind, u32)>::new());
        }
        outer.section(&instances);
        outer.finish()
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

    const LIMIT: usize = 32 << 20;

    /// Instantiates the component in a plugin store with a 32 MiB cap.
    fn instantiate(bytes: &[u8]) -> Result<(), String> {
        let runtime = super::super::Runtime::new().expect("runtime");
        runtime.instantiate_bare(bytes, LIMIT).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn many_memories_are_capped_together() {
        // 48 memories of 1 MiB: each under the cap, 48 MiB together.
        let error = instantiate(&component_of(&memories(48, 16), 1)).expect_err("over the cap");
        assert!(error.contains("over 33554432 (limits.memory_limit_bytes)"), "{error}");
        // 24 of them fit.
        instantiate(&component_of(&memories(24, 16), 1)).expect("under the cap");
    }

    #[test]
    fn a_huge_table_is_capped_by_the_memory_limit() {
        let error = instantiate(&component_of(&table(1 << 24), 1)).expect_err("over the cap");
        assert!(error.contains("growing a table by 134217728 bytes"), "{error}");
        instantiate(&component_of(&table(1 << 16), 1)).expect("a table of 64 Ki elements fits");
    }

    #[test]
    fn instances_and_memories_are_counted() {
        let error = instantiate(&twice(&memories(0, 0), 600)).expect_err("too many instances");
        assert!(error.contains("instance count too high"), "{error}");
        let error = instantiate(&twice(&memories(60, 0), 1)).expect_err("too many memories");
        assert!(error.contains("memory count too high"), "{error}");
        instantiate(&twice(&memories(40, 0), 1)).expect("80 empty memories are allowed");
    }
}
