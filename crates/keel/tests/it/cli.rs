//! The CLI, run as a process against a real server: output, --json and exit codes.

use crate::support::{cli_at, Server};

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn kv_verbs_and_exit_codes() {
    let s = Server::start(&[]);
    let o = s.cli(&["put", "greeting", "hello"]);
    assert_eq!(
        (code(&o), out(&o).as_str()),
        (0, "OK (revision 1)\n"),
        "{}",
        err(&o)
    );
    let o = s.cli(&["get", "greeting"]);
    assert_eq!((code(&o), out(&o).as_str()), (0, "hello\n"));
    let o = s.cli(&["--json", "get", "greeting"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(
        (v["value"].as_str(), v["mod_revision"].as_u64()),
        (Some("hello"), Some(1))
    );

    // stdin, binary-safe
    let o = s.cli_stdin(&["put", "blob", "-"], &[0, 1, 2, 255]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = s.cli(&["get", "blob"]);
    assert_eq!(o.stdout, vec![0, 1, 2, 255]);

    let o = s.cli(&["get", "nope"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("not found"), "{}", err(&o));

    let o = s.cli(&["put", "greeting", "again", "--if-revision", "7"]);
    assert_eq!(code(&o), 1, "condition not met");
    assert!(
        err(&o).starts_with("error: ") && err(&o).lines().count() == 1,
        "{}",
        err(&o)
    );
    let o = s.cli(&["put", "greeting", "again", "--if-revision", "1"]);
    assert_eq!(code(&o), 0);
    let o = s.cli(&["get", "greeting", "--revision", "1"]);
    assert_eq!(out(&o), "hello\n");

    for k in ["app/a", "app/b", "app/c"] {
        assert_eq!(code(&s.cli(&["put", k, k])), 0);
    }
    let o = s.cli(&["ls", "app/"]);
    assert_eq!(out(&o), "app/a = app/a\napp/b = app/b\napp/c = app/c\n");
    let o = s.cli(&["ls", "app/", "--keys-only"]);
    assert_eq!(out(&o), "app/a\napp/b\napp/c\n");
    let o = s.cli(&["--json", "ls", "app/"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);

    let o = s.cli(&["incr", "n"]);
    assert_eq!(out(&o), "1\n");
    let o = s.cli(&["incr", "n", "-5"]);
    assert_eq!(out(&o), "-4\n");
    let o = s.cli(&["incr", "greeting"]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("not_a_number"), "{}", err(&o));

    let o = s.cli(&["del", "app/a"]);
    assert_eq!(code(&o), 0);
    assert!(out(&o).starts_with("deleted 1"), "{}", out(&o));
    let o = s.cli(&["del", "app/a"]);
    assert_eq!(code(&o), 1);
    let o = s.cli(&["del", "--prefix", "app/"]);
    assert!(out(&o).starts_with("deleted 2"), "{}", out(&o));
    let o = s.cli(&["del"]);
    assert_eq!(code(&o), 2, "usage error");
}

#[test]
fn txn_from_file_and_stdin() {
    let s = Server::start(&[]);
    let txn = r#"{"compare":[{"key":"x","field":"exists","op":"==","value":false}],
                 "success":[{"put":{"key":"x","value":"1"}}],
                 "failure":[{"get":{"key":"x"}}]}"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("txn.json");
    std::fs::write(&file, txn).unwrap();
    let o = s.cli(&["txn", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), "SUCCEEDED (revision 1)\nput x\n");
    let o = s.cli_stdin(&["txn", "-"], txn.as_bytes());
    assert_eq!(code(&o), 1, "compare failed: condition not met");
    assert_eq!(out(&o), "FAILED (revision 1)\nget x = 1\n");
    let o = s.cli_stdin(&["--json", "txn", "-"], txn.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["succeeded"], false);
    let o = s.cli_stdin(&["txn", "-"], b"{oops");
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("invalid transaction JSON"), "{}", err(&o));
}

#[test]
fn lease_verbs() {
    let s = Server::start(&[]);
    let o = s.cli(&["--json", "lease", "grant", "30s"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let id = v["id"].as_u64().unwrap().to_string();
    assert_eq!(v["ttl_ms"], 30_000);
    let o = s.cli(&["lease", "grant", "1m"]);
    assert!(
        out(&o).starts_with("lease ") && out(&o).contains("granted with TTL 60s"),
        "{}",
        out(&o)
    );
    assert_eq!(code(&s.cli(&["put", "svc/x", "up", "--lease", &id])), 0);
    let o = s.cli(&["lease", "get", &id]);
    assert!(
        out(&o).contains("TTL 30s") && out(&o).contains("keys: svc/x"),
        "{}",
        out(&o)
    );
    let o = s.cli(&["lease", "keepalive", &id]);
    assert_eq!(code(&o), 0);
    assert!(out(&o).contains("kept alive"), "{}", out(&o));
    let o = s.cli(&["lease", "ls"]);
    assert_eq!(out(&o).lines().count(), 2);
    let o = s.cli(&["lease", "revoke", &id]);
    assert!(out(&o).contains("1 keys deleted"), "{}", out(&o));
    let o = s.cli(&["lease", "get", &id]);
    assert_eq!(code(&o), 1);
    let o = s.cli(&["lease", "keepalive", &id, "--forever"]);
    assert_eq!(
        code(&o),
        1,
        "a lease that is gone ends --forever with exit 1"
    );
    let o = s.cli(&["lease", "grant", "10"]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("needs a unit"), "{}", err(&o));
}

#[test]
fn unreachable_server_is_one_line_exit_2() {
    let o = cli_at("http://127.0.0.1:1", &["get", "a"], None);
    assert_eq!(code(&o), 2);
    let e = err(&o);
    assert!(
        e.starts_with("error: cannot reach keel at http://127.0.0.1:1/"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let o = cli_at("not a url", &["get", "a"], None);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("invalid address"), "{}", err(&o));
}

#[test]
fn serve_help_lists_server_settings_with_their_defaults_and_no_client_options() {
    let o = std::process::Command::new(crate::support::KEEL)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let help = out(&o);
    for setting in [
        "--listen <LISTEN>",
        "[default: 127.0.0.1:7400]",
        "--max-value-size",
        "[default: 1048576]",
        "--history",
        "[default: 10000]",
        "--segment-size",
        "[default: 67108864]",
    ] {
        assert!(help.contains(setting), "{setting} missing from:\n{help}");
    }
    for client_only in ["--addr", "--json"] {
        assert!(!help.contains(client_only), "{client_only} in:\n{help}");
    }
    let o = std::process::Command::new(crate::support::KEEL)
        .args(["--json", "serve"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(
        err(&o).contains("options of the client verbs"),
        "{}",
        err(&o)
    );
}
