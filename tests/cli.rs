//! The command line's bad-input behaviour: one clear line and a non-zero exit, no
//! database needed.

use std::process::Command;

fn walcast(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_walcast"))
        .args(args)
        .output()
        .expect("run walcast");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"name = "cli"
[source]
dbname = "shop"
user = "walcast"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[registry]
url = "http://127.0.0.1:8081"
[tables."public.orders"]
"#;

/// Writes `text` as a connector and returns the single stderr line of `walcast check`.
fn check_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = walcast(&["check", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0].replace(&format!("{}/", dir.path().display()), "")
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = walcast(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        format!("walcast {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, stdout, _) = walcast(&["--help"]);
    assert_eq!(code, Some(0));
    for command in ["run", "check", "setup"] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

#[test]
fn missing_file() {
    let (code, _, stderr) = walcast(&["check", "/nonexistent/shop.toml"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        "error: /nonexistent/shop.toml: no such file; pass a connector .toml file or a folder of them"
    );
}

#[test]
fn invalid_toml() {
    let e = check_error("name = \"cli\"\n[source\n");
    assert!(e.starts_with("error: c.toml:2:"), "{e}");
}

#[test]
fn wrong_type() {
    let e = check_error(&GOOD.replace("dbname = \"shop\"", "dbname = 5"));
    assert!(e.starts_with("error: c.toml:3:10:"), "{e}");
    assert!(e.contains("expected a string"), "{e}");
}

#[test]
fn unknown_key() {
    let e = check_error(&GOOD.replace("[kafka]\n", "[kafka]\nbootstrap = \"x\"\n"));
    assert!(
        e.starts_with("error: c.toml:6:1: unknown field `bootstrap`"),
        "{e}"
    );
    assert!(e.contains("remove it or fix its spelling"), "{e}");
}

#[test]
fn empty_table_list() {
    let e = check_error(&GOOD.replace("[tables.\"public.orders\"]\n", ""));
    assert!(
        e.contains("no tables to capture; add a section such as [tables.\"public.orders\"]"),
        "{e}"
    );
}

#[test]
fn unset_environment_variable() {
    let e =
        check_error(&GOOD.replace("user = \"walcast\"", "user = \"${WALCAST_CLI_TEST_UNSET}\""));
    assert!(e.starts_with("error: c.toml:4:8:"), "{e}");
    assert!(
        e.contains("environment variable WALCAST_CLI_TEST_UNSET is not set"),
        "{e}"
    );
}

#[test]
fn bad_log_level() {
    let (code, _, stderr) = walcast(&["--log-level", "loud=?", "check", "x.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("error: --log-level `loud=?` is not a level or filter"),
        "{stderr}"
    );
}

/// A row filter that would publish another table (comments hide its parentheses) is
/// refused by every command that reads the file, before any database is touched.
#[test]
fn a_filter_that_escapes_its_parentheses_is_refused_by_check_setup_and_run() {
    let payload = "/* ( */ true) , public.secrets WHERE (true /* ) */";
    let text = format!("{GOOD}filter = \"{payload}\"\n");
    let e = check_error(&text);
    assert!(
        e.contains("table public.orders: filter contains a comment (`/*`); write one SQL boolean expression"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    for command in ["setup", "run"] {
        let (code, _, stderr) = walcast(&[command, path.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("filter contains a comment"),
            "{command}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
    }
    let snapshot = check_error(&format!(
        "{GOOD}snapshot_filter = \"a = E'\\\\'' ) , public.secrets WHERE (true\"\n"
    ));
    assert!(
        snapshot.contains("snapshot_filter has a `)` without its `(`"),
        "{snapshot}"
    );
}
