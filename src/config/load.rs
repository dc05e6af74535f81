//! The command line, the environment and the `--config` file merged into one `Config`, in that precedence.
//!
//! clap parses the command line and the `SPOUT_*` variables and says where each value came from. Each key of the
//! file whose option got no value there is appended to the command line as `--name=value`, and the result is
//! parsed again: the file's values then go through the same checks as flags, and the file can never override a
//! flag or a variable. A refused value from the file is reported with the file, line and key instead of the
//! flag. This is the only place in `config` that reads a file: the one `--config` names.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, FromArgMatches};

use super::file::{self, Entry, Known};
use super::parse::clap_error;
use super::{error, Args, Config, ConfigError};

/// The option naming the file; it cannot be set from the file itself.
const CONFIG: &str = "config";

/// Parses `argv` with `command`: `--help` and `--version` print and exit the process, as clap does; other
/// errors come back as a [`ConfigError`].
fn matches(command: &Command, argv: &[OsString]) -> Result<ArgMatches, ConfigError> {
    match command.clone().try_get_matches_from(argv) {
        Ok(m) => Ok(m),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => Err(clap_error(&e)),
    }
}

/// Parses `argv` (program name first) with `command`, which is spout's own or one that flattens [`Args`]
/// (`spout doctor`'s), merges the `--config` file under it and validates the server options into a `Config`.
/// Returns the merged matches too, for the command's own options.
pub fn load(command: &Command, argv: Vec<OsString>) -> Result<(ArgMatches, Config), ConfigError> {
    let first = matches(command, &argv)?;
    let Some(path) = first.get_one::<String>(CONFIG).cloned() else {
        let args = Args::from_arg_matches(&first).map_err(|e| clap_error(&e))?;
        return Ok((first, Config::from_args(args)?));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| error("--config", format!("cannot read {path}: {e}")))?;
    let args = command.get_arguments().collect::<Vec<_>>();
    let known: Vec<Known<'_>> = args
        .iter()
        .filter_map(|arg| {
            let name = arg.get_long()?;
            (name != CONFIG && arg.get_env().is_some()).then_some(Known {
                name,
                repeatable: matches!(arg.get_action(), ArgAction::Append),
            })
        })
        .collect();
    let entries = file::parse(&path, &text, &known)?;

    let mut merged = argv;
    let mut from_file: Vec<&Entry> = Vec::new();
    for entry in &entries {
        let id = args
            .iter()
            .find(|arg| arg.get_long() == Some(entry.name.as_str()))
            .map(|arg| arg.get_id().as_str());
        let unset = id.is_some_and(|id| {
            !matches!(
                first.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
        if unset {
            merged.extend(
                entry
                    .values
                    .iter()
                    .map(|v| OsString::from(format!("--{}={v}", entry.name))),
            );
            from_file.push(entry);
        }
    }
    let located = |e: ConfigError| match from_file
        .iter()
        .find(|entry| e.key.starts_with(&format!("--{} ", entry.name)))
    {
        Some(entry) => file::located(&path, entry.line, Some(&entry.name), e.reason),
        None => e,
    };
    let merged = matches(command, &merged).map_err(located)?;
    let args = Args::from_arg_matches(&merged).map_err(|e| clap_error(&e))?;
    let config = Config::from_args(args).map_err(located)?;
    Ok((merged, config))
}
