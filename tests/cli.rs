//! The command line as a user meets it, against the real binary: `spout --help` and the README's table of
//! options say the same thing, values that start with `-` get the message that names their key, and a start that
//! fails says why once.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::start_server;

const WAIT: Duration = Duration::from_secs(10);

/// Runs the binary with `args` and a clean environment (no `SPOUT_*` variable can leak into the help text or
/// the values); waits for it to exit.
fn spout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spout");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("spout {args:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// What one option says about itself: its value name, environment variable and default.
#[derive(Debug, PartialEq, Eq)]
struct OptionDoc {
    value: String,
    env: String,
    default: String,
}

/// The text between `open` and the next `]` in `text`.
fn bracketed<'a>(text: &'a str, open: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(']')?;
    Some(&text[start..start + end])
}

/// The options of `spout --help` (clap's long help: a `--flag <VALUE>` line, then its text, `[default: X]` at the
/// end of the text, and `[env: NAME=]`), without the actions `--help`, `--version` and `--print-config`.
fn help_options(help: &str) -> BTreeMap<String, OptionDoc> {
    let mut options = BTreeMap::new();
    let mut current: Option<(String, String, String)> = None;
    let mut finish = |current: Option<(String, String, String)>| {
        if let Some((flag, value, text)) = current {
            let env = bracketed(&text, "[env: ")
                .unwrap_or_else(|| panic!("{flag} names no environment variable: {text}"))
                .trim_end_matches('=')
                .to_owned();
            let default = bracketed(&text, "[default: ")
                .unwrap_or_else(|| panic!("{flag} states no default: {text}"))
                .to_owned();
            options.insert(
                flag,
                OptionDoc {
                    value,
                    env,
                    default,
                },
            );
        }
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (2..=6).contains(&indent) && trimmed.starts_with('-') {
            finish(current.take());
            let spec = trimmed
                .trim_start_matches("-h, ")
                .trim_start_matches("-V, ");
            let (flag, value) = spec.split_once(' ').unwrap_or((spec, ""));
            // Actions, not settings: the README describes them beside the table.
            if ["--help", "--version", "--print-config"].contains(&flag) {
                continue;
            }
            // `<VALUE>`, or `[<VALUE>]` for a value that may be left out (`--status`).
            let value = value.replace(['<', '>'], "");
            current = Some((flag.to_owned(), value.to_owned(), String::new()));
        } else if let Some((_, _, text)) = &mut current {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    finish(current);
    options
}

/// The rows of the README's table under `## Options`: `| \`--flag VALUE\` | \`ENV\` | default | meaning |`.
fn readme_options(readme: &str) -> BTreeMap<String, OptionDoc> {
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| l.trim_end() != "## Options")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(!section.is_empty(), "README has no '## Options' section");
    // A `|` inside a cell is escaped as `\|` (Markdown tables).
    let unquote = |cell: &str| cell.trim().trim_matches('`').replace("\\|", "|");
    let mut options = BTreeMap::new();
    for row in section.iter().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert!(cells.len() >= 4, "a row of four cells: {row}");
        let spec = unquote(cells[0]);
        let (flag, value) = spec.split_once(' ').unwrap_or((&spec, ""));
        let doc = OptionDoc {
            value: value.to_owned(),
            env: unquote(cells[1]),
            default: unquote(cells[2]),
        };
        assert!(
            options.insert(flag.to_owned(), doc).is_none(),
            "{flag} is twice in the README's table"
        );
    }
    options
}

#[test]
fn help_and_the_readme_table_list_the_same_options_with_the_same_defaults() {
    let out = spout(&["--help"]);
    assert!(out.status.success(), "spout --help: {:?}", out.status);
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");

    let from_help = help_options(&help);
    let from_readme = readme_options(&readme);
    assert!(
        from_help.len() > 20,
        "parsed {} options from --help",
        from_help.len()
    );

    let only_help: Vec<&String> = from_help
        .keys()
        .filter(|k| !from_readme.contains_key(*k))
        .collect();
    let only_readme: Vec<&String> = from_readme
        .keys()
        .filter(|k| !from_help.contains_key(*k))
        .collect();
    assert!(
        only_help.is_empty(),
        "in --help, not in the README's table: {only_help:?}"
    );
    assert!(
        only_readme.is_empty(),
        "in the README's table, not in --help: {only_readme:?}"
    );
    for (flag, doc) in &from_help {
        assert_eq!(
            Some(doc),
            from_readme.get(flag),
            "{flag}: --help, then README"
        );
    }
}

#[test]
fn a_negative_value_gets_the_message_of_its_key_with_or_without_equals() {
    for (flag, value) in [
        ("--history", "-1"),
        ("--max-body", "-5"),
        ("--heartbeat", "-1s"),
    ] {
        let apart = spout(&[flag, value]);
        let joined = spout(&[&format!("{flag}={value}")]);
        let apart_err = String::from_utf8_lossy(&apart.stderr).into_owned();
        let joined_err = String::from_utf8_lossy(&joined.stderr).into_owned();
        assert_eq!(apart.status.code(), Some(2), "{flag} {value}: {apart_err}");
        assert_eq!(apart_err, joined_err, "{flag} {value}");
        assert!(
            apart_err.starts_with(&format!("spout: invalid {flag} (SPOUT_")),
            "{apart_err}"
        );
        assert!(apart_err.contains(&format!("'{value}'")), "{apart_err}");
        assert!(!apart_err.contains("unexpected argument"), "{apart_err}");
    }
}

/// Starts a second spout on `addr`; returns its exit code and stderr.
fn second_on(addr: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["--listen", addr, "--workers", "1"];
    args.extend_from_slice(extra);
    let out = spout(&args);
    let mut stderr = String::new();
    out.stderr
        .as_slice()
        .read_to_string(&mut stderr)
        .expect("stderr");
    (out.status.code(), stderr)
}

#[test]
fn a_busy_port_is_reported_once() {
    let first = start_server(&["--workers", "1"]);
    let addr = first.addr.to_string();
    let lines_naming = |stderr: &str| stderr.lines().filter(|l| l.contains(&addr)).count();

    let (code, stderr) = second_on(&addr, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        lines_naming(&stderr),
        1,
        "one line names the address: {stderr}"
    );
    assert!(
        stderr.contains("ERROR"),
        "a log line at the default level: {stderr}"
    );
    assert!(stderr.contains("already in use"), "{stderr}");

    // With the logger silenced the reason still comes, once, as a plain line.
    let (code, stderr) = second_on(&addr, &["--log-level", "off"]);
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("spout: cannot listen on {addr}: ");
    assert_eq!(lines_naming(&stderr), 1, "{stderr}");
    assert!(stderr.starts_with(&expected), "{stderr}");
}
