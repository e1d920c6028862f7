//! The Python and JavaScript plugins load under the default limits, and a
//! component importing what the host does not provide (wasi:http, which
//! componentize-js links unless told `-d http`) is refused at load, naming
//! the import.
use crate::support::common;

use common::{host, host_ok, plugin, unique, write_pipeline};

#[test]
fn every_python_and_javascript_plugin_loads_under_the_default_limits() {
    let topic = unique("lang_plugins");
    let mut body = format!("[[topics]]\nname = \"{topic}\"\n");
    for name in ["py_langs", "js_langs"] {
        body += &format!(
            "\n[[generators]]\nname = \"{name}\"\ntopic = \"{topic}\"\nplugin = \"{}\"\n",
            plugin(name).display()
        );
    }
    for name in ["py_json_row", "js_json_row"] {
        body += &format!(
            "\n[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{}\"\nmapper = \"{}\"\n",
            unique(name),
            plugin(name).display()
        );
    }
    let path = write_pipeline(&body);
    let out = host_ok(&["validate", path.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["py_langs", "js_langs", "py_json_row", "js_json_row"] {
        assert!(stdout.contains(&format!("{name}.wasm")), "{name} loaded: {stdout}");
    }
    assert_eq!(
        stdout
            .matches("columns message_text, message_time, offset_id, partition_id")
            .count(),
        2,
        "both mappers declare json-row's columns: {stdout}"
    );
}

#[test]
fn a_component_importing_wasi_http_is_refused_at_load_naming_the_import() {
    let topic = unique("http_import");
    let path = write_pipeline(&format!(
        "[[topics]]\nname = \"{topic}\"\n\n[[generators]]\nname = \"g\"\ntopic = \"{topic}\"\nplugin = \"{}\"\n",
        plugin("fixture_js_imports_http").display()
    ));
    let out = host(&["validate", path.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("fixture_js_imports_http.wasm"),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("wasi:http/"), "names the import: {stderr}");
}
