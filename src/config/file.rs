//! The configuration file (`--config FILE`): TOML whose top-level keys are the options' long names without their
//! dashes, with the values and units the flags take (`max-queued-bytes = "1MiB"`, `workers = 4`,
//! `listen = ["0.0.0.0:8080", "0.0.0.0:8081=pipely"]`).
//!
//! Sans-io: [`parse`] takes the file's text and the known option names and returns each entry as the flag
//! values it stands for, with its line, so that `load` can hand them to the same parser as the command
//! line (one place checks every value) and name the file and line when a value is refused. It refuses, naming
//! file, line and key: a syntax error, an unknown key, a table, and a value that is neither a string, a whole
//! number nor a boolean (nor, for a repeatable option, an array of them).

use toml::Value;

use super::ConfigError;

/// One key of the file, as flag values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The option's long name, without dashes (`max-body`).
    pub name: String,
    /// Its values as they would be written after the flag: one, or several for a repeatable option.
    pub values: Vec<String>,
    /// The 1-based line the key is on.
    pub line: usize,
}

/// An option the file may set: its long name, and whether it repeats (`--listen`).
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub name: &'a str,
    pub repeatable: bool,
}

/// The error for `name` (or the file itself, with no name) at `line` of `path`.
pub fn located(path: &str, line: usize, name: Option<&str>, reason: String) -> ConfigError {
    ConfigError {
        key: match name {
            Some(name) => format!("{name} in {path} line {line}"),
            None => format!("{path} line {line}"),
        },
        reason,
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line where top-level key `name` is set: the first line that starts with it (bare or quoted) followed by `=`.
fn key_line(text: &str, name: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(name)
                .or_else(|| line.strip_prefix(&format!("\"{name}\"")))
                .or_else(|| line.strip_prefix(&format!("'{name}'")));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// One scalar as a flag value: a string as written, a whole number in decimal, a boolean as `true` or `false`
/// (for an on/off option such as `status`).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses the file's text; `known` lists the options it may set.
pub fn parse(path: &str, text: &str, known: &[Known<'_>]) -> Result<Vec<Entry>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(1, |span| line_of(text, span.start));
        located(
            path,
            line,
            None,
            format!("not valid TOML: {}", e.message().trim()),
        )
    })?;
    // In the file's order, so that the first bad key reported is the first one in the file.
    let mut keys: Vec<(usize, &String, &Value)> = table
        .iter()
        .map(|(name, value)| (key_line(text, name), name, value))
        .collect();
    keys.sort_by_key(|(line, _, _)| *line);
    let mut entries = Vec::with_capacity(keys.len());
    for (line, name, value) in keys {
        let Some(option) = known.iter().find(|k| k.name == name) else {
            let names: Vec<&str> = known.iter().map(|k| k.name).collect();
            return Err(located(
                path,
                line,
                Some(name),
                format!(
                    "unknown key; the keys are the options of spout --help: {}",
                    names.join(", ")
                ),
            ));
        };
        let values = match value {
            Value::Array(items) if option.repeatable => {
                items.iter().map(scalar).collect::<Option<Vec<_>>>()
            }
            other => scalar(other).map(|v| vec![v]),
        };
        let Some(values) = values else {
            let expected = if option.repeatable {
                "a string, a whole number, a boolean, or an array of them"
            } else {
                "a string, a whole number or a boolean"
            };
            return Err(located(
                path,
                line,
                Some(name),
                format!("expected {expected}, got {}", value.type_str()),
            ));
        };
        entries.push(Entry {
            name: name.clone(),
            values,
            line,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [Known<'static>; 3] = [
        Known {
            name: "listen",
            repeatable: true,
        },
        Known {
            name: "max-body",
            repeatable: false,
        },
        Known {
            name: "workers",
            repeatable: false,
        },
    ];

    fn entry(name: &str, values: &[&str], line: usize) -> Entry {
        Entry {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            line,
        }
    }

    #[test]
    fn keys_become_flag_values_with_their_lines() {
        let text = "# spout\nmax-body = \"2MiB\"\n\nworkers = 4\nlisten = [\"0.0.0.0:8080\", \"0.0.0.0:8081=pipely\"]\n";
        assert_eq!(
            parse("f.toml", text, &KNOWN),
            Ok(vec![
                entry("max-body", &["2MiB"], 2),
                entry("workers", &["4"], 4),
                entry("listen", &["0.0.0.0:8080", "0.0.0.0:8081=pipely"], 5),
            ])
        );
        assert_eq!(parse("f.toml", "", &KNOWN), Ok(vec![]));
        assert_eq!(
            parse(
                "f.toml",
                "listen = \"127.0.0.1:9000\"\n\"workers\" = 2\n",
                &KNOWN
            ),
            Ok(vec![
                entry("listen", &["127.0.0.1:9000"], 1),
                entry("workers", &["2"], 2)
            ])
        );
    }

    #[test]
    fn refusals_name_file_line_and_key() {
        let cases: [(&str, &str); 6] = [
            (
                "workers = 2\nmax-bodyy = \"1MiB\"\n",
                "invalid max-bodyy in f.toml line 2: unknown key; the keys are the options of spout --help: listen, max-body, workers",
            ),
            (
                "workers = 2\nmax-body = 1.5\n",
                "invalid max-body in f.toml line 2: expected a string, a whole number or a boolean, got float",
            ),
            (
                "max-body = [\"1MiB\"]\n",
                "invalid max-body in f.toml line 1: expected a string, a whole number or a boolean, got array",
            ),
            (
                "listen = [\"a\", 1.5]\n",
                "invalid listen in f.toml line 1: expected a string, a whole number, a boolean, or an array of them, got array",
            ),
            ("[workers]\nn = 1\n", "invalid workers in f.toml line 1: expected a string, a whole number or a boolean, got table"),
            ("workers = 2\n\nmax-body = \n", "invalid f.toml line 3: not valid TOML: "),
        ];
        for (text, message) in cases {
            let err = parse("f.toml", text, &KNOWN).expect_err(text);
            assert!(err.to_string().starts_with(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_boolean_is_the_flag_value_true_or_false() {
        assert_eq!(
            parse("f.toml", "workers = true\nmax-body = false\n", &KNOWN),
            Ok(vec![
                entry("workers", &["true"], 1),
                entry("max-body", &["false"], 2)
            ])
        );
    }

    #[test]
    fn lines_of_offsets() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }
}
