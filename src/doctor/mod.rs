//! `spout doctor [--target-connections N] [--json] [server options]`: how many connections this machine lets one
//! spout process hold, what they cost, and what to change for a target.
//!
//! Three parts: [`machine`] reads the machine (the only part that touches `/proc` or runs `systemctl`),
//! [`assess`] turns the machine and the server's [`Config`] into an [`assess::Assessment`] (pure, unit-tested),
//! [`report`] prints it as text or JSON. The server options are the server's own (flags, `SPOUT_*`
//! variables, the `--config` file), so that `doctor` assesses the configuration that will run: `--workers` and `--listen` change
//! the descriptors spout keeps, `--max-connections` may bound it before the machine does.
//!
//! Exit codes: 0 when the machine holds the target (or no target was given), 1 when it does not, 2 for bad
//! arguments (as the server).

pub mod assess;
pub mod machine;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::config::{load, parse_count, Args};

/// spout doctor: how many connections this machine lets one spout process hold, what they cost in memory, and
/// which settings to change for a target (exit 0: it holds the target, 1: it does not, 2: bad arguments).
///
/// It takes the server's options too (and their SPOUT_* variables), so that it assesses the configuration
/// that will run.
#[derive(Debug, Parser)]
#[command(
    name = "spout doctor",
    version,
    after_help = "Nothing is started: the server options only shape the assessment (--workers and --listen \
                  set the descriptors spout keeps, --max-connections may bound it first). Durations and \
                  sizes as in spout --help."
)]
struct DoctorArgs {
    /// Connections one process should hold; every setting that must change for it is listed with the line
    /// that changes it, and the exit code is 1 if any must
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    target_connections: Option<String>,

    /// Channels the connections spread over, for the memory estimate
    /// [default: one per connection]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    channels: Option<String>,

    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: Args,
}

/// Runs `spout doctor` with the arguments after `doctor`.
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("spout doctor"))
        .chain(args)
        .collect();
    let (matches, config) = match load::load(&DoctorArgs::command(), argv) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("spout doctor: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match DoctorArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let target = match count_arg("--target-connections", args.target_connections.as_deref()) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let channels = match count_arg("--channels", args.channels.as_deref()) {
        Ok(channels) => channels,
        Err(code) => return code,
    };
    let machine = machine::Machine::read();
    let assessment = assess::assess(&machine, &config, channels, target);
    let text = if args.json {
        report::json(&machine, &assessment).to_string()
    } else {
        report::text(&machine, &assessment)
    };
    println!("{text}");
    match &assessment.target {
        Some(target) if !target.changes.is_empty() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// A positive count given to `flag`; a bad one is reported on stderr and gives exit code 2.
fn count_arg(flag: &str, raw: Option<&str>) -> Result<Option<u64>, ExitCode> {
    match raw.map(parse_count) {
        None => Ok(None),
        Some(Ok(0)) => {
            eprintln!("spout doctor: invalid {flag}: expected at least 1");
            Err(ExitCode::from(2))
        }
        Some(Ok(n)) => Ok(Some(n as u64)),
        Some(Err(reason)) => {
            eprintln!("spout doctor: invalid {flag}: {reason}");
            Err(ExitCode::from(2))
        }
    }
}
