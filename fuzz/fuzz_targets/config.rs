#![no_main]
//! The configuration loader (`config::parse`): YAML text to a validated
//! `Config`, as `seedgate run --config` and `check-config` read it.
//!
//! Input: the file's text (inputs that are not UTF-8 are skipped: reading
//! the file refuses them before parsing).
//!
//! Checked, on every input:
//! - an accepted config validates again, and what `check-config` prints for
//!   it parses back to the same config;
//! - a parse error names the file and, when it has one, a line that is in
//!   the file;
//! - a validation error lists at least one problem, each naming a field
//!   whose first part is a top-level field of the config, with a reason and
//!   a line in the file when it has one, each shown as `file:line: field:
//!   reason` in the message.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seedgate::config::{self, Config, ConfigError};

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines as YAML counts them (a lone CR breaks a line too); a line
    // number may point one past the last line (an error at the end).
    let breaks = text.replace("\r\n", "\n").matches(['\n', '\r']).count();
    let last_line = breaks as u64 + 1;
    let err = match config::parse(FILE, text) {
        Ok(cfg) => return accepted(&cfg),
        Err(e) => e,
    };
    let shown = err.to_string();
    match err {
        ConfigError::Parse {
            file,
            line,
            message,
        } => {
            assert_eq!(file, FILE);
            assert!(!message.is_empty());
            assert!(shown.starts_with(&format!("{FILE}:")), "{shown}");
            if let Some(line) = line {
                assert!((1..=last_line).contains(&line), "line {line}: {shown}");
            }
        }
        ConfigError::Invalid { file, problems } => {
            assert_eq!(file, FILE);
            assert!(!problems.is_empty(), "invalid without a problem");
            for p in &problems {
                let top = p.field.split(['.', '[']).next().unwrap_or_default();
                assert!(
                    top_level_fields().contains(top),
                    "{:?} is not a config field: {shown}",
                    p.field
                );
                assert!(!p.reason.is_empty(), "{} has no reason", p.field);
                let at = match p.line {
                    Some(line) => {
                        assert!((1..=last_line).contains(&line), "line {line}: {shown}");
                        format!("{FILE}:{line}: {}: ", p.field)
                    }
                    None => format!("{FILE}: {}: ", p.field),
                };
                assert!(shown.contains(&at), "{at:?} missing from {shown}");
            }
        }
        ConfigError::Read { .. } => panic!("parse never reads a file: {shown}"),
    }
});

/// A config `parse` accepted: it validates, and `check-config`'s printout
/// of it is read back to the same config.
fn accepted(cfg: &Config) {
    assert!(cfg.clone().validate().is_ok());
    let printed = serde_saphyr::to_string(cfg).expect("check-config prints it");
    match config::parse("printed.yaml", &printed) {
        Ok(again) => assert!(
            *again == *cfg,
            "{again:?}\n!=\n{cfg:?}\nprinted:\n{printed}"
        ),
        Err(e) => panic!("check-config's output is refused: {e}\nprinted:\n{printed}"),
    }
}

/// The names of the config's top-level fields.
fn top_level_fields() -> &'static BTreeSet<String> {
    static FIELDS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let value = serde_json::to_value(Config::default()).expect("the default serializes");
        value
            .as_object()
            .expect("the config is a map")
            .keys()
            .cloned()
            .collect()
    })
}
