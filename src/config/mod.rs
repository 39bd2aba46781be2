//! Connector configuration: TOML files, `${ENV}` expansion, validation with
//! file:line:column errors.
//!
//! One file describes one connector (`connectors/<name>.toml`); a folder holds many.
//! Parsing (`model`) and validation (`validate`) are pure, so every bad-input case
//! is a unit test; nothing here talks to a database (that is `walcast check`).

mod connector;
mod error;
mod interpolate;
mod model;
mod selector;
mod sql_expression;
mod transforms;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use connector::*;
pub use error::{ConfigError, Location};
pub use interpolate::{expand, InterpolateError};
pub use selector::{NamePattern, TableSelector};
pub use values::{HumanDuration, Secret};

/// Parses and validates one connector from its text; `path` is used for messages and
/// to resolve relative `*_file` paths.
pub fn parse_connector(path: &Path, text: &str) -> Result<Connector, ConfigError> {
    let file: model::ConnectorFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ConfigError::at(
            Location::from_span(path, text, &span),
            explain_toml_error(e.message()),
        )
    })?;
    validate::Validator { path, text }.connector(file)
}

/// serde's messages are good but terse; add what to do for the common ones.
fn explain_toml_error(message: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("missing field") {
        format!("{message}; add it (see connectors/example.toml for every option)")
    } else if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else {
        message.to_owned()
    }
}

/// Reads and validates one connector file.
pub fn load_file(path: &Path) -> Result<Connector, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::unreadable(
            path,
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such file; pass a connector .toml file or a folder of them".to_owned()
                }
                _ => format!("cannot read it: {e}"),
            },
        )
    })?;
    parse_connector(path, &text)
}

/// Loads a single `.toml` file, or every `*.toml` in a folder (sorted by name), and
/// checks that no two connectors would share a name or a replication slot.
pub fn load_path(path: &Path) -> Result<Vec<Connector>, ConfigError> {
    let connectors = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ConfigError::unreadable(path, format!("cannot list the folder: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ConfigError::unreadable(
                path,
                "the folder has no *.toml connector files",
            ));
        }
        files
            .iter()
            .map(|f| load_file(f))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![load_file(path)?]
    };
    let mut connectors = connectors;
    one_metrics_setting(&mut connectors)?;
    let mut names: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut slots: BTreeMap<(&str, u16, &str, &str), &Path> = BTreeMap::new();
    for c in &connectors {
        if let Some(other) = names.insert(&c.name, &c.file) {
            return Err(ConfigError::unreadable(
                &c.file,
                format!(
                    "connector name `{}` is also used by {}; names must be unique",
                    c.name,
                    other.display()
                ),
            ));
        }
        let slot_key = (
            c.source.host.as_str(),
            c.source.port,
            c.source.dbname.as_str(),
            c.source.slot.as_str(),
        );
        if let Some(other) = slots.insert(slot_key, &c.file) {
            return Err(ConfigError::unreadable(
                &c.file,
                format!(
                    "slot `{}` is also used by {}; each connector needs its own slot",
                    c.source.slot,
                    other.display()
                ),
            ));
        }
    }
    Ok(connectors)
}

/// One process serves one status/metrics endpoint, so `[metrics]` is a process setting:
/// it comes from the files of the folder that have a `[metrics]` section (they must
/// say the same), and files without one take it. Without any, the default applies.
fn one_metrics_setting(connectors: &mut [Connector]) -> Result<(), ConfigError> {
    let mut chosen: Option<(&Path, bool, std::net::SocketAddr)> = None;
    for c in connectors.iter().filter(|c| c.metrics.explicit) {
        let this = (c.metrics.enabled, c.metrics.listen);
        match chosen {
            None => chosen = Some((&c.file, this.0, this.1)),
            Some((file, enabled, listen)) if (enabled, listen) != this => {
                let show = |enabled: bool, listen: std::net::SocketAddr| {
                    if enabled {
                        format!("listen = \"{listen}\"")
                    } else {
                        "enabled = false".to_owned()
                    }
                };
                return Err(ConfigError::unreadable(
                    &c.file,
                    format!(
                        "[metrics] {} differs from {} in {}; one walcast process serves one metrics endpoint, so give every file the same [metrics] or keep it in one file only",
                        show(this.0, this.1),
                        show(enabled, listen),
                        file.display()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some((_, enabled, listen)) = chosen {
        let enabled_listen = (enabled, listen);
        for c in connectors.iter_mut() {
            c.metrics.enabled = enabled_listen.0;
            c.metrics.listen = enabled_listen.1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
