//! Reading a configuration: YAML text or a file, parsed, located and
//! checked; the embedded default.

use std::path::Path;

use super::*;

/// Parses a configuration from YAML text. `file` names it in errors.
///
/// # Errors
/// [`ConfigError::Parse`] or [`ConfigError::Invalid`] with every problem.
pub fn parse(file: &str, text: &str) -> Result<Validated<Config>, ConfigError> {
    let config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    config.validate().map_err(|mut problems| {
        let lines = lines::index(text);
        for p in &mut problems {
            p.line = lines.line_of(&p.field);
        }
        ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        }
    })
}

/// Reads and parses a configuration file.
///
/// # Errors
/// See [`parse`]; also [`ConfigError::Read`].
pub fn load_file(path: &Path) -> Result<Validated<Config>, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// The embedded default configuration.
///
/// # Panics
/// Never: a unit test proves the embedded file parses.
#[allow(clippy::expect_used)]
pub fn embedded_default() -> Validated<Config> {
    parse("<embedded default>", EMBEDDED_DEFAULT).expect("the embedded default config is valid")
}

/// Test helper: `yaml` is refused with every one of `wanted` in the message.
#[cfg(test)]
#[track_caller]
#[allow(clippy::unwrap_used)]
pub(crate) fn assert_problems(yaml: &str, wanted: &[&str]) {
    let err = parse("c.yaml", yaml).unwrap_err().to_string();
    for want in wanted {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
}
