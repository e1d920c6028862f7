//! Call deadlines that hold while a plugin waits in WASI.
//!
//! Epoch interruption stops a guest only while it runs wasm code: a guest
//! blocked in a host call (`std::thread::sleep` is `wasi:clocks` +
//! `wasi:io/poll`) is out of its reach, and a ten-minute sleep would hold the
//! sink for ten minutes. Every wait a plugin can make goes through
//! `wasi:io/poll` (`poll` and `pollable.block`): the streams the host gives a
//! plugin are in memory (no stdin, stdout discarded, stderr captured) and it
//! has no files or sockets. So those two functions are shadowed here by
//! versions that give up at the store's deadline with [`DeadlineExceeded`],
//! which [`super::Plugin`] reports as a timeout like an epoch interrupt.
//! Cost: one clock read per wait, nothing per call (the async alternative
//! would put every call on a fiber).

use super::PluginState;
use std::time::Instant;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::poll::DynPollable;

/// A plugin waited in WASI past its call deadline.
#[derive(Debug, thiserror::Error)]
#[error("the plugin waited in a WASI call past its deadline")]
pub struct DeadlineExceeded;

/// `wasi:io/poll` bounded by the store's deadline.
pub(super) struct DeadlinePoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Option<Instant>,
}

impl DeadlinePoll<'_> {
    /// Runs one wait, ending it with [`DeadlineExceeded`] at the deadline.
    fn bounded<R>(&mut self, wait: impl AsyncFnOnce(&mut ResourceTable) -> wasmtime::Result<R>) -> wasmtime::Result<R> {
        let Some(deadline) = self.deadline else {
            return block_on(wait(self.table));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        block_on(async { tokio::time::timeout(left, wait(self.table)).await })
            .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlineExceeded)))
    }
}

/// Waits for `f` on this thread. A plugin is configured from async code when
/// a pipeline loads (wasmtime-wasi's own `in_tokio` panics there: a runtime
/// within a runtime), so a worker of a multi-threaded runtime hands its
/// other tasks over for the wait.
fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(f))
        }
        _ => in_tokio(f),
    }
}

impl poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.bounded(async move |t| async_poll::Host::poll(t, pollables).await)
    }
}

impl poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        self.bounded(async move |t| async_poll::HostPollable::ready(t, pollable).await)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.bounded(async move |t| async_poll::HostPollable::block(t, pollable).await)
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

struct HasDeadlinePoll;

impl HasData for HasDeadlinePoll {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Replaces `wasi:io/poll` of a linker that has WASI with the bounded one.
pub(super) fn shadow_poll(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<PluginState, HasDeadlinePoll>(linker, |s| DeadlinePoll {
        table: &mut s.table,
        deadline: s.deadline,
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
