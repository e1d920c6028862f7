//! The Python and JavaScript json-row mappers (plugins/python/json_row,
//! plugins/javascript/json-row) store exactly what the Rust json-row stores:
//! three sinks read the same 1,000 messages, good and malformed (not JSON,
//! bad UTF-8, empty, no payload, truncated, nested deep...), into three
//! tables; the tables and the dead letters, reasons included, are equal.
use crate::support::common;

use common::{Db, create_topic, host_ok, plugin, produce_raw, unique, write_pipeline};

/// Payloads that exercise every rule of json-row and of serde_json's errors.
const SEEDS: &[&[u8]] = &[
    br#"{"Favorite Language": "Rust"}"#,
    br#"[1, 2.5, -3e10, true, false, null, "x\u00e9\n"]"#,
    br#"{"a": {"b": [1, {"c": "d"}]}, "e": -0.0E+1}"#,
    b"\"str\"",
    b"0",
    b"123.456e-7",
    b"  {\"k\" : \"v\" }  \n",
    "{\"été\": \"€😀\"}".as_bytes(),
    b"[]",
    b"{}",
    b"{\"a\":1,\n\"b\":\n[2,\n3]}",
    br#""\ud800""#,
    b"\xef\xbb\xbf{}",
    b"1e400",
    b"123456789012345678901234567890",
];

const MALFORMED: &[&[u8]] = &[
    b"not json",
    b"\xff\xfe{}",
    br#"{"truncated": "#,
    b"nul",
    b"fals",
    b"nulx",
    b"[1,]",
    br#"{"a":1,}"#,
    br#"{"a" 1}"#,
    b"{1:2}",
    b"[1 2]",
    b"01",
    b"-",
    b"1.",
    b"1e+",
    br#""\x""#,
    br#""\u12""#,
    br#""\u12g4""#,
    b"\"a\x01b\"",
    b"[",
    br#"{"a":"#,
    b"1 2",
    b" ",
    b"\n\n  x",
    b"NaN",
    b"-Infinity",
    b"\xe0\x80",
    b"\xe0\xa0",
    b"\xed\xa0\x80",
    b"\xf0\x90\x80",
    b"\xf4\x90\x80\x80",
    b"abc\xff",
    b"\x00",
    b"]",
    b"{\"a\":1,\n\"b\":2,\n}",
    b"\xf0\x9f\x98",
];

/// A small deterministic generator, so every run checks the same messages.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// 1,000 payloads: the seeds and malformed cases as they are, deep nesting,
/// then random mutations of them (bytes dropped, inserted, changed, cut).
fn payloads() -> Vec<Option<Vec<u8>>> {
    let mut out: Vec<Option<Vec<u8>>> = SEEDS.iter().chain(MALFORMED).map(|p| Some(p.to_vec())).collect();
    out.push(None);
    out.push(Some(Vec::new()));
    out.push(Some([vec![b'['; 3000], vec![b']'; 3000]].concat()));
    out.push(Some(vec![b'['; 3000]));
    out.push(Some(vec![b'7'; 5000]));
    let mut rng = Lcg(13);
    let alphabet = b"{}[]\",:\\ \n0-1e.aut\x00\x80\xc3\xff";
    while out.len() < 1000 {
        if rng.below(3) == 0 {
            // A good message (the seed with the byte order mark is not one inside).
            let seed = SEEDS[rng.below(SEEDS.len())];
            let seed = if seed.starts_with(b"\xef\xbb\xbf") {
                SEEDS[0]
            } else {
                seed
            };
            let n = out.len();
            out.push(Some([format!("{{\"n\": {n}, \"v\": ").as_bytes(), seed, b"}"].concat()));
            continue;
        }
        let pool = if rng.below(3) == 0 { MALFORMED } else { SEEDS };
        let mut p = pool[rng.below(pool.len())].to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(5) {
                0 if !p.is_empty() => {
                    p.remove(rng.below(p.len()));
                }
                1 => p.insert(rng.below(p.len() + 1), alphabet[rng.below(alphabet.len())]),
                2 if !p.is_empty() => {
                    let i = rng.below(p.len());
                    p[i] = rng.below(256) as u8;
                }
                3 if !p.is_empty() => p.truncate(rng.below(p.len())),
                _ => {}
            }
        }
        out.push(Some(p));
    }
    out
}

type Row = (String, Option<String>, i64, i64);
type DeadLetter = (i32, i64, Option<Vec<u8>>, String);

fn rows(db: &Db, table: &str) -> Vec<Row> {
    db.query(
        &format!(
            "SELECT message_text, message_time::text, offset_id, partition_id FROM \"{table}\" ORDER BY offset_id"
        ),
        &[],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn dead_letters(db: &Db, topic: &str, sink: &str) -> Vec<DeadLetter> {
    db.query(
        "SELECT partition, \"offset\", payload, reason FROM wasm_stream_dead_letters
         WHERE topic = $1 AND sink = $2 ORDER BY \"offset\"",
        &[&topic, &sink],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn python_and_javascript_mappers_store_exactly_what_json_row_stores() {
    let topic = unique("equivalence");
    create_topic(&topic, 1);
    let payloads = payloads();
    assert_eq!(payloads.len(), 1000);
    produce_raw(&topic, &payloads);

    let sinks = [
        ("rust", "json_row"),
        ("python", "py_json_row"),
        ("javascript", "js_json_row"),
    ];
    let tables: Vec<String> = sinks.iter().map(|(s, _)| unique(&format!("eq_{s}"))).collect();
    // What this test checks is the rows, not the default compile deadline
    // (plugin_python_javascript_components_load does): the suite runs it
    // beside other binaries that compile, so the deadline is the longest.
    let mut body = format!("[plugins]\ncompile_timeout_ms = 600000\n\n[[topics]]\nname = \"{topic}\"\n");
    for ((sink, wasm), table) in sinks.iter().zip(&tables) {
        body += &format!(
            "\n[[sinks]]\nname = \"{sink}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\nbatch_size = 250\n",
            plugin(wasm).display()
        );
    }
    let path = write_pipeline(&body);
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let expected_rows = rows(&db, &tables[0]);
    let expected_dead = dead_letters(&db, &topic, "rust");
    // The corpus really mixes both outcomes, of many kinds.
    assert!(expected_rows.len() > 300, "{} rows", expected_rows.len());
    assert_eq!(expected_rows.len() + expected_dead.len(), 1000);
    let kinds: std::collections::BTreeSet<&str> = expected_dead
        .iter()
        .map(|d| d.3.split(" at line").next().unwrap_or_default())
        .collect();
    assert!(kinds.len() > 15, "kinds of rejection: {kinds:?}");
    for (i, (sink, _)) in sinks.iter().enumerate().skip(1) {
        let got_rows = rows(&db, &tables[i]);
        assert!(
            got_rows == expected_rows,
            "{sink}: rows differ: {}",
            first_difference(&expected_rows, &got_rows)
        );
        let got_dead = dead_letters(&db, &topic, sink);
        assert!(
            got_dead == expected_dead,
            "{sink}: dead letters differ: {}",
            first_difference(&expected_dead, &got_dead)
        );
    }
}

fn first_difference<T: PartialEq + std::fmt::Debug>(expected: &[T], got: &[T]) -> String {
    match expected.iter().zip(got).find(|(e, g)| e != g) {
        Some((e, g)) => {
            let short = |v: &T| format!("{v:?}").chars().take(400).collect::<String>();
            format!("expected {}, got {}", short(e), short(g))
        }
        None => format!("expected {} entries, got {}", expected.len(), got.len()),
    }
}
