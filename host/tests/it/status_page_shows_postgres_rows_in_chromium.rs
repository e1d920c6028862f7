//! The status page, loaded in a real headless Chromium while `host run`
//! runs: after its script has fetched `/status`, the DOM shows each sink's
//! name and the row count PostgreSQL holds, and a sink paused with `host
//! sink pause` shows "paused" until resumed. The screenshot is kept in
//! `target/test-artifacts/status-page.png`.
use crate::support::{common, ops};

use common::{Db, Running, plugin, repo_root, unique, wait_for, write_pipeline};
use ops::{attr, count_rows, dom_row, free_port, headless, wait_for_code};
use std::time::Duration;

#[test]
fn the_page_shows_each_sink_and_the_rows_postgres_holds() {
    let (langs, cars) = (unique("page_langs"), unique("page_cars"));
    let (langs_table, cars_table) = (unique("page_langs_rows"), unique("page_cars_rows"));
    let (langs_sink, cars_sink) = (unique("langs_sink"), unique("cars_sink"));
    let port = free_port();
    let path = write_pipeline(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[audit]
interval_ms = 0

[[topics]]
name = "{langs}"

[[topics]]
name = "{cars}"

[[generators]]
name = "langs"
topic = "{langs}"
plugin = "{langs_plugin}"
interval_ms = 0
count = 30

[[generators]]
name = "cars"
topic = "{cars}"
plugin = "{cars_plugin}"
interval_ms = 0
count = 17

[[sinks]]
name = "{langs_sink}"
topic = "{langs}"
table = "{langs_table}"
mapper = "{mapper}"

[[sinks]]
name = "{cars_sink}"
topic = "{cars}"
table = "{cars_table}"
mapper = "{mapper}"
"#,
        langs_plugin = plugin("langs").display(),
        cars_plugin = plugin("cars").display(),
        mapper = plugin("json_row").display(),
    ));
    let host = Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);
    wait_for_code(port, "/health/live", 200, Duration::from_secs(60));
    let db = Db::connect();
    wait_for("rows stored", Duration::from_secs(120), || {
        count_rows(&db, &langs_table) == 30 && count_rows(&db, &cars_table) == 17
    });

    let url = format!("http://127.0.0.1:{port}/");
    let dom = headless(&url, &["--dump-dom"]);
    assert!(
        dom.contains(r#"data-loaded="true""#),
        "the page's script did not render:\n{dom}"
    );
    for (sink, table) in [(&langs_sink, &langs_table), (&cars_sink, &cars_table)] {
        let rows = count_rows(&db, table);
        // Small tables are counted, not estimated (see row_counts).
        let row = format!(r#"data-sink="{sink}" data-rows="{rows}" data-rows-kind="exact""#);
        assert!(
            dom.contains(&row),
            "the page does not show {sink} with {rows} rows:\n{dom}"
        );
        assert!(dom.contains(&format!(r#"<td class="sink-name">{sink}</td>"#)), "{dom}");
    }
    for (generator, count) in [("langs", 30), ("cars", 17)] {
        let row = format!(r#"data-generator="{generator}" data-produced="{count}""#);
        assert!(
            dom.contains(&row),
            "the page does not show generator {generator} with {count}:\n{dom}"
        );
    }

    // A paused sink says so on the page, the other does not.
    let path_str = path.to_str().expect("utf-8");
    common::host_ok(&["sink", "pause", path_str, "--sink", &cars_sink]);
    let mut dom = String::new();
    wait_for("the page shows the pause", Duration::from_secs(30), || {
        dom = headless(&url, &["--dump-dom"]);
        paused(&dom, &cars_sink) == Some(true)
    });
    let row = dom_row(&dom, "data-sink", &cars_sink).unwrap_or_default();
    assert!(row.contains(">paused, running<"), "the state cell says paused:\n{row}");
    assert_eq!(paused(&dom, &langs_sink), Some(false), "{dom}");
    common::host_ok(&["sink", "resume", path_str, "--sink", &cars_sink]);
    wait_for("the page shows the resume", Duration::from_secs(30), || {
        paused(&headless(&url, &["--dump-dom"]), &cars_sink) == Some(false)
    });

    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts folder");
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(&url, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    host.terminate();
}

/// The `data-paused` of the sink's row, if the page shows the sink.
fn paused(dom: &str, sink: &str) -> Option<bool> {
    attr(&dom_row(dom, "data-sink", sink)?, "data-paused").map(|p| p == "true")
}
