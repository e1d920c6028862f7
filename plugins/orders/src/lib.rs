//! Example mapper of several tables (contract 0.3.0): an order with its line
//! items, `{"order_id": 7, "customer": "ann", "items": [{"sku": "A-1",
//! "qty": 2, "price": 9.99}]}`, becomes
//!
//! - one row of the sink's table: `order_id`, `customer`, `items` (their
//!   count), keyed by `order_id` in an upsert sink;
//! - one row per item of `<sink table>_items`: `order_id`, `line` (1, 2, ...
//!   in the order of the array), `sku`, `qty`, `price` (numeric, as written),
//!   keyed by `order_id` and `line`.
//!
//! The orders are declared first, so the host writes them before their items:
//! a foreign key from the items to the orders holds at every commit. A
//! tombstone whose key is an order id deletes the order (in an upsert sink);
//! its items go with it when their foreign key says `ON DELETE CASCADE`.
//! Anything else that is not such an order is rejected with the reason.
use sdk::mapper::{Guest, Message, Outcome, Table};
use sdk::types::{Column, ColumnType, Value};

/// The tables, as `configure` declares them (their index in this list is
/// what the rows name).
const ORDERS: u32 = 0;
const ITEMS: u32 = 1;

struct Orders;

impl Guest for Orders {
    fn configure(settings: String) -> Result<Vec<Table>, String> {
        let extra: std::collections::BTreeMap<String, serde_json::Value> = sdk::parse_settings("orders", &settings)?;
        if let Some(k) = extra.keys().next() {
            return Err(format!("orders: unknown setting {k:?} (this mapper takes none)"));
        }
        let column = |name: &str, kind, nullable| Column {
            name: name.to_string(),
            kind,
            nullable,
        };
        let mut orders = sdk::one_table(vec![
            column("order_id", ColumnType::Integer, false),
            column("customer", ColumnType::Text, false),
            column("items", ColumnType::Integer, false),
        ]);
        orders[0].key = Some(vec!["order_id".into()]);
        let items = sdk::named_table(
            "items",
            vec![
                column("order_id", ColumnType::Integer, false),
                column("line", ColumnType::Integer, false),
                column("sku", ColumnType::Text, false),
                column("qty", ColumnType::Integer, false),
                column("price", ColumnType::Numeric, false),
            ],
            Some(&["order_id", "line"]),
        );
        orders.push(items);
        Ok(orders)
    }

    fn map_batch(messages: Vec<Message>) -> Vec<Outcome> {
        messages
            .into_iter()
            .map(|m| map_one(m).unwrap_or_else(Outcome::Rejected))
            .collect()
    }
}

fn map_one(m: Message) -> Result<Outcome, String> {
    let Some(payload) = m.payload else {
        let key = m.key.ok_or("a tombstone without a key")?;
        let id = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| k.trim().parse::<i64>().ok())
            .ok_or("a tombstone whose key is not an order id")?;
        return Ok(Outcome::Delete(vec![sdk::mapper::TableKey {
            table: ORDERS,
            key: vec![Value::Integer(id)],
        }]));
    };
    let order: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let id = order
        .get("order_id")
        .and_then(serde_json::Value::as_i64)
        .ok_or("order_id is missing or not an integer")?;
    let customer = order
        .get("customer")
        .and_then(serde_json::Value::as_str)
        .ok_or("customer is missing or not a string")?;
    let items = order
        .get("items")
        .and_then(serde_json::Value::as_array)
        .ok_or("items is missing or not an array")?;
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let line = i as i64 + 1;
        let field = |name: &str| item.get(name).ok_or(format!("item {line}: {name} is missing"));
        let sku = field("sku")?
            .as_str()
            .ok_or(format!("item {line}: sku is not a string"))?;
        let qty = field("qty")?
            .as_i64()
            .ok_or(format!("item {line}: qty is not an integer"))?;
        let price = match field("price")? {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return Err(format!("item {line}: price is not a number")),
        };
        lines.push(vec![
            Value::Integer(id),
            Value::Integer(line),
            Value::Text(sku.to_string()),
            Value::Integer(qty),
            Value::Numeric(price),
        ]);
    }
    let order_row = vec![
        Value::Integer(id),
        Value::Text(customer.to_string()),
        Value::Integer(items.len() as i64),
    ];
    Ok(Outcome::Rows(vec![
        sdk::rows_of(ORDERS, vec![order_row]),
        sdk::rows_of(ITEMS, lines),
    ]))
}

sdk::export_mapper!(Orders);
