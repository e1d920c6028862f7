//! A mapper of two tables (plugins/orders: an order and its line items)
//! under SIGKILLs. 10,000 orders of 1 to 5 items each, in two partitions,
//! a foreign key from the items to the orders made before the sink starts:
//! in the end every order is stored once, every item once, and every item's
//! order is there (the foreign key held at every commit, since the host
//! writes a batch's orders before its items). A few orders carry an item
//! PostgreSQL refuses (a CHECK on the items) and a few are not JSON: they
//! are dead letters, and no row of theirs is in either table. Everything is
//! compared with a model computed from the topic. A rewind then deletes
//! the rewound orders from both tables, items first, and consuming again
//! gives the model back.
//!
//! An upsert sink of the same mapper, with orders sent again with other
//! items, ends with the last version of each order and each of its lines,
//! in the items table its pipeline file names (`[sinks.tables]`).
use crate::support::common;

use common::{
    Db, Keyed, Random, SinkPipeline, consume_through_sigkills, create_topic, produce_keyed, read_topic, unique,
};
use std::collections::BTreeMap;

const ORDERS: i64 = 10_000;
const KILLS: usize = 5;
/// One order in this many has an item with `qty` 0, which the items'
/// CHECK refuses; one in `NOT_JSON` is not JSON.
const BAD_QTY: i64 = 97;
const NOT_JSON: i64 = 499;
/// The lineage columns (README "Reprocessing"), in a table made by hand.
const LINEAGE: &str = "_kafka_topic text, _kafka_partition bigint, _kafka_offset bigint";

/// An order as the model holds it: customer, and its items (sku, qty, price).
type Order = (String, Vec<(String, i64, String)>);
/// A row of the orders table: order_id, customer, items.
type OrderRow = (i64, String, i64);
/// A row of the items table: order_id, line, sku, qty, price.
type ItemRow = (i64, i64, String, i64, String);

/// The payload of order `id` (deterministic, so the model can be checked
/// against the topic too).
fn order(id: i64, random: &mut Random) -> Vec<u8> {
    if id % NOT_JSON == 0 {
        return format!("order {id}, not JSON").into_bytes();
    }
    let items: Vec<serde_json::Value> = (0..1 + random.below(5))
        .map(|i| {
            let qty = if id % BAD_QTY == 0 && i == 0 {
                0
            } else {
                1 + random.below(9)
            };
            serde_json::json!({
                "sku": format!("sku-{}", random.below(500)),
                "qty": qty,
                "price": format!("{}.{:02}", random.below(200), random.below(100)),
            })
        })
        .collect();
    serde_json::json!({"order_id": id, "customer": format!("customer-{}", id % 613), "items": items})
        .to_string()
        .into_bytes()
}

/// The orders a topic's payloads describe, by id (the last one wins), and
/// the ids that must be dead letters: not JSON, or an item PostgreSQL refuses.
fn model(payloads: impl Iterator<Item = Vec<u8>>) -> (BTreeMap<i64, Order>, Vec<i64>) {
    let (mut orders, mut dead) = (BTreeMap::new(), Vec::new());
    for (at, payload) in payloads.enumerate() {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            dead.push(-(at as i64) - 1);
            continue;
        };
        let id = json["order_id"].as_i64().expect("order_id");
        let items: Vec<(String, i64, String)> = json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    i["sku"].as_str().expect("sku").to_string(),
                    i["qty"].as_i64().expect("qty"),
                    i["price"].as_str().expect("price").to_string(),
                )
            })
            .collect();
        if items.iter().any(|i| i.1 <= 0) {
            dead.push(id);
            continue;
        }
        orders.insert(id, (json["customer"].as_str().expect("customer").to_string(), items));
    }
    (orders, dead)
}

/// Orders and items as the tables hold them.
fn stored(db: &Db, table: &str) -> (Vec<OrderRow>, Vec<ItemRow>) {
    stored_in(db, table, &format!("{table}_items"))
}

/// The orders of `table` and the items of `items`.
fn stored_in(db: &Db, table: &str, items: &str) -> (Vec<OrderRow>, Vec<ItemRow>) {
    let orders = db
        .query(
            &format!("SELECT order_id, customer, items FROM \"{table}\" ORDER BY order_id"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let items = db
        .query(
            &format!("SELECT order_id, line, sku, qty, price::text FROM \"{items}\" ORDER BY order_id, line"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    (orders, items)
}

/// What the tables must hold for `orders`: one row per order, one per item.
fn expected(orders: &BTreeMap<i64, Order>) -> (Vec<OrderRow>, Vec<ItemRow>) {
    let rows = orders
        .iter()
        .map(|(id, (customer, items))| (*id, customer.clone(), items.len() as i64))
        .collect();
    let items = orders
        .iter()
        .flat_map(|(id, (_, items))| {
            items
                .iter()
                .enumerate()
                .map(move |(i, (sku, qty, price))| (*id, i as i64 + 1, sku.clone(), *qty, price.clone()))
        })
        .collect();
    (rows, items)
}

fn count(db: &Db, table: &str) -> i64 {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}

#[test]
fn every_order_and_every_item_lands_once_through_sigkills_with_a_foreign_key() {
    let topic = unique("fanout");
    let table = unique("orders");
    create_topic(&topic, 2);
    let mut random = Random::new();
    let messages: Vec<Keyed> = (1..=ORDERS)
        .map(|id| {
            (
                (id % 2) as i32,
                id.to_string().into_bytes(),
                Some(order(id, &mut random)),
            )
        })
        .collect();
    produce_keyed(&topic, &messages);

    let db = Db::connect();
    // The host finds the tables and writes them; the foreign key and the
    // CHECK are the user's, and so are the lineage columns, of the types
    // the host gives them, so the sink can be rewound.
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, order_id bigint NOT NULL UNIQUE,
           customer text NOT NULL, items bigint NOT NULL, {LINEAGE});
         CREATE TABLE \"{table}_items\" (message_id bigserial PRIMARY KEY,
           order_id bigint NOT NULL REFERENCES \"{table}\" (order_id), line bigint NOT NULL,
           sku text NOT NULL, qty bigint NOT NULL CHECK (qty > 0), price numeric NOT NULL, {LINEAGE})"
    ));
    let path = SinkPipeline::new(&topic, &table, "orders")
        .partitions(2)
        .batch_size(200)
        .sink_line("flush_interval_ms = 50")
        .write();
    let path = path.to_str().expect("utf-8 path");
    let items_table = format!("{table}_items");
    let at_kills = consume_through_sigkills(path, KILLS, &mut random, || count(&db, &items_table));
    println!("items at each kill: {at_kills:?}");
    let mid_run = at_kills.iter().filter(|n| **n > 0).count();
    assert!(mid_run >= 2, "kills landed mid-run, items at kills: {at_kills:?}");

    let kafka = read_topic(&topic);
    assert_eq!(kafka.len() as i64, ORDERS);
    let (orders, dead) = model(kafka.iter().map(|m| m.payload.clone().expect("payload")));
    assert!(orders.len() as i64 > ORDERS * 9 / 10 && !dead.is_empty());

    let check = |when: &str| {
        let (want_orders, want_items) = expected(&orders);
        let (got_orders, got_items) = stored(&db, &table);
        assert_eq!(
            got_orders.len(),
            want_orders.len(),
            "orders {when}; items at kills: {at_kills:?}"
        );
        assert!(got_orders == want_orders, "the orders differ from the model {when}");
        assert_eq!(
            got_items.len(),
            want_items.len(),
            "items {when}; items at kills: {at_kills:?}"
        );
        assert!(got_items == want_items, "the items differ from the model {when}");
        assert_eq!(orphans(&db, &table), 0, "every item's order is there {when}");

        // The dead letters: each bad message once, with the table it failed in.
        let letters = db.dead_letters(&topic);
        assert_eq!(
            letters.len(),
            dead.len(),
            "{when}: {:?}",
            &letters[..letters.len().min(5)]
        );
        let refused = letters.iter().filter(|(_, _, reason)| reason.contains("qty")).count();
        let bad_qty = dead.iter().filter(|id| **id > 0).count();
        assert_eq!(
            refused, bad_qty,
            "the CHECK on the items refused each bad order once {when}"
        );

        // Every offset is stored, once.
        let stored: i64 = db.query(
            "SELECT sum(next_offset)::bigint FROM wasm_stream_offsets WHERE table_name = $1 AND topic = $2",
            &[&table, &topic],
        )[0]
        .get(0);
        assert_eq!(stored, ORDERS, "{when}");
    };
    check("after the run");

    // A replay writes one table's rows only: it refuses, and says what to do.
    let refused = common::host_within(
        &["dead-letters", "replay", path, "--sink", "rows"],
        std::time::Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("writes 2 tables") && stderr.contains("hint:"),
        "{stderr}"
    );
    check("after the refused replay");

    // A rewind deletes the rewound orders' rows from both tables, items
    // first (the foreign key would refuse the other order), and their dead
    // letters; consumed again, both tables are the model once more.
    let (orders_before, items_before) = (count(&db, &table), count(&db, &items_table));
    let out = common::host_ok(&[
        "sink",
        "rewind",
        path,
        "--sink",
        "rows",
        "--to-offset",
        "0:2000",
        "1:3000",
    ]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("resumes at 2000") && out.contains("resumes at 3000"),
        "{out}"
    );
    let (orders_after, items_after) = (count(&db, &table), count(&db, &items_table));
    assert!(
        orders_after < orders_before && items_after < items_before,
        "rows went from both tables: orders {orders_before} -> {orders_after}, items {items_before} -> {items_after}"
    );
    assert_eq!(orphans(&db, &table), 0, "no item without its order after the rewind");
    let kept: i64 = db.query(
        &format!(
            "SELECT count(*) FROM \"{table}\" WHERE (_kafka_partition = 0 AND _kafka_offset >= 2000) OR (_kafka_partition = 1 AND _kafka_offset >= 3000)"
        ),
        &[],
    )[0]
    .get(0);
    assert_eq!(kept, 0, "no order of the rewound offsets is left");
    common::host_ok(&["consume", path, "--once", "--quiet"]);
    check("after the rewind");
}

/// Items whose order is not in the orders table.
fn orphans(db: &Db, table: &str) -> i64 {
    db.query(
        &format!(
            "SELECT count(*) FROM \"{table}_items\" i WHERE NOT EXISTS (SELECT 1 FROM \"{table}\" o WHERE o.order_id = i.order_id)"
        ),
        &[],
    )[0]
    .get(0)
}

#[test]
fn an_upsert_sink_keeps_the_last_version_of_each_order_and_line() {
    let topic = unique("fanout_up");
    let table = unique("orders_up");
    create_topic(&topic, 1);
    let mut random = Random::new();
    // 300 orders, then new versions (other items, more or fewer) of about
    // half of them; none of them bad (this table has no CHECK).
    let mut messages: Vec<Keyed> = Vec::new();
    for round in 0..2 {
        for id in (1..=300i64).filter(|id| id % BAD_QTY != 0 && id % NOT_JSON != 0) {
            if round == 1 && random.below(2) == 0 {
                continue;
            }
            messages.push((0, id.to_string().into_bytes(), Some(order(id, &mut random))));
        }
    }
    // The items' table named by the file instead of <table>_items.
    let lines_table = format!("{table}_lines");
    let path = SinkPipeline::new(&topic, &table, "orders")
        .batch_size(64)
        .upsert(&["order_id"])
        .sink_line(&format!("tables = {{ items = \"{lines_table}\" }}"))
        .write();
    produce_keyed(&topic, &messages);
    common::host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    // The model: the last version of each order; a line stays until a later
    // version writes it again (an upsert replaces rows, it deletes none).
    let mut orders: BTreeMap<i64, Order> = BTreeMap::new();
    let mut lines: BTreeMap<(i64, i64), (String, i64, String)> = BTreeMap::new();
    for (_, _, payload) in &messages {
        let (one, _) = model(std::iter::once(payload.clone().expect("payload")));
        for (id, (customer, items)) in one {
            for (i, item) in items.iter().enumerate() {
                lines.insert((id, i as i64 + 1), item.clone());
            }
            orders.insert(id, (customer, items));
        }
    }
    let db = Db::connect();
    assert_eq!(count(&db, &format!("{table}_items")), 0, "no <table>_items made");
    let (got_orders, got_items) = stored_in(&db, &table, &lines_table);
    let (want_orders, _) = expected(&orders);
    assert!(got_orders == want_orders, "the orders differ from the model");
    let want_items: Vec<ItemRow> = lines
        .into_iter()
        .map(|((id, line), (sku, qty, price))| (id, line, sku, qty, price))
        .collect();
    assert_eq!(got_items.len(), want_items.len());
    assert!(got_items == want_items, "the items differ from the model");
}
