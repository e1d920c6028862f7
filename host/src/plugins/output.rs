//! What a mapper's outcomes may cost the host, per sink batch.
//!
//! One call's output is bounded by wasmtime's hostcall fuel (set to
//! `limits.max_output_bytes` per store). When a batch call fails the sink
//! maps its messages one at a time, up to `batch_size` calls, each of which
//! could return that much again: [`OutputBudget`] bounds their sum, so a
//! batch never holds more than `max_output_bytes` of outcomes.

use super::PluginError;
use super::mapper::{Outcome, Value};

/// What the host holds for one value: its bytes and the value itself.
fn value_bytes(v: &Value) -> usize {
    let heap = match v {
        Value::Text(s) | Value::Json(s) | Value::Uuid(s) | Value::Numeric(s) => s.len(),
        Value::Bytea(b) => b.len(),
        _ => 0,
    };
    heap + std::mem::size_of::<Value>()
}

/// What the host holds for one outcome (close to the fuel wasmtime charges
/// to lift it).
pub fn outcome_bytes(outcome: &Outcome) -> usize {
    let values = |vs: &[Value]| vs.iter().map(value_bytes).sum::<usize>();
    std::mem::size_of::<Outcome>()
        + match outcome {
            Outcome::Rows(parts) => parts
                .iter()
                .flat_map(|p| &p.rows)
                .map(|r| values(r) + std::mem::size_of::<Vec<Value>>())
                .sum(),
            Outcome::Rejected(reason) => reason.len(),
            Outcome::Delete(keys) => keys.iter().map(|k| values(&k.key)).sum(),
        }
}

/// The outcome bytes one batch may still take.
pub struct OutputBudget {
    plugin: String,
    limit_bytes: usize,
    used_bytes: usize,
}

impl OutputBudget {
    pub fn new(plugin: &str, limit_bytes: usize) -> Self {
        Self {
            plugin: plugin.to_string(),
            limit_bytes,
            used_bytes: 0,
        }
    }

    /// The outcome, or the error that dead-letters its message when it
    /// does not fit in what is left (later, smaller outcomes still may).
    pub fn take(&mut self, outcome: Outcome) -> Result<Outcome, PluginError> {
        let bytes = outcome_bytes(&outcome);
        match self.used_bytes.checked_add(bytes) {
            Some(total) if total <= self.limit_bytes => {
                self.used_bytes = total;
                Ok(outcome)
            }
            _ => Err(PluginError::OutputTooLarge {
                name: self.plugin.clone(),
                limit_bytes: self.limit_bytes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_row(bytes: usize) -> Outcome {
        crate::plugins::compat::first_table_rows(vec![vec![Value::Text("x".repeat(bytes))]])
    }

    #[test]
    fn outcomes_past_the_budget_are_refused_and_smaller_ones_still_fit() {
        let mut budget = OutputBudget::new("m", 1 << 20);
        assert!(budget.take(text_row(600 << 10)).is_ok());
        let refused = budget.take(text_row(600 << 10)).expect_err("over the budget");
        assert!(refused.to_string().contains("1048576 bytes"), "{refused}");
        assert!(budget.take(text_row(1000)).is_ok());
        assert!(outcome_bytes(&text_row(1000)) > 1000);
    }
}
