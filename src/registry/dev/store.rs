//! The dev registry's state and its append-only log (one JSON line per change, fsynced
//! before the change is applied and answered; replayed at start, so ids and versions
//! survive restarts). Synchronous: the server calls it under one lock.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::canonical::canonical_form;
use crate::registry::api::{ApiError, SubjectVersion, VersionId};
use crate::registry::compat::{self, CompatibilityLevel};

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "schemas.jsonl";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the registry log {path}: {source}; check that the data directory exists and is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry log {path} is corrupt at line {line}: {message}; restore the file from a backup or remove that line")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Register {
        subject: String,
        version: u32,
        id: u32,
        schema: String,
    },
    Delete {
        subject: String,
        versions: Vec<u32>,
        permanent: bool,
    },
    Config {
        subject: Option<String>,
        compatibility: Option<CompatibilityLevel>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Version {
    version: u32,
    id: u32,
    deleted: bool,
}

/// Which versions a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Exclude,
    Include,
}

/// What a compatibility test compares with.
#[derive(Debug, Clone, Copy)]
pub enum Against {
    Version(VersionId),
    AllVersions,
}

pub struct Store {
    path: PathBuf,
    file: File,
    len: u64,
    by_id: HashMap<u32, Arc<str>>,
    by_text: HashMap<Arc<str>, u32>,
    /// How many subject versions (deleted or not) use each id.
    id_uses: HashMap<u32, usize>,
    next_id: u32,
    subjects: BTreeMap<String, Vec<Version>>,
    global: CompatibilityLevel,
    subject_levels: HashMap<String, CompatibilityLevel>,
    parsed: HashMap<u32, Arc<apache_avro::Schema>>,
}

impl Store {
    /// Opens (creating if needed) the log in `data_dir` and replays it. A torn last line
    /// (a crash mid-write) is cut off with a warning; any other bad line is an error.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(LOG_FILE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let mut store = Store {
            path: path.clone(),
            file,
            len: 0,
            by_id: HashMap::new(),
            by_text: HashMap::new(),
            id_uses: HashMap::new(),
            next_id: 1,
            subjects: BTreeMap::new(),
            global: CompatibilityLevel::default(),
            subject_levels: HashMap::new(),
            parsed: HashMap::new(),
        };
        let mut offset = 0usize;
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        while let Some((index, line)) = lines.next() {
            let complete = line.ends_with('\n');
            let content = line.trim();
            if !content.is_empty() {
                match serde_json::from_str::<Record>(content) {
                    Ok(record) => store.apply(record),
                    Err(e) if !complete && lines.peek().is_none() => {
                        tracing::warn!(
                            path = %path.display(),
                            line = index + 1,
                            "cutting off a torn last line of the registry log ({e})"
                        );
                        store.file.set_len(offset as u64).map_err(io)?;
                        break;
                    }
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            path,
                            line: index + 1,
                            message: e.to_string(),
                        })
                    }
                }
            }
            offset += line.len();
        }
        if offset > 0 && !text[..offset].ends_with('\n') {
            // A complete record without its newline: end the line before appending.
            store.file.write_all(b"\n").map_err(io)?;
            offset += 1;
        }
        store.len = offset as u64;
        tracing::info!(
            path = %path.display(),
            subjects = store.subjects.len(),
            schemas = store.by_id.len(),
            "registry log replayed"
        );
        Ok(store)
    }

    /// Writes a record, fsyncs it, then applies it.
    fn commit(&mut self, record: Record) -> Result<(), ApiError> {
        let mut line = serde_json::to_vec(&record)
            .map_err(|e| ApiError::store(format!("cannot encode a log record: {e}")))?;
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no half-written line behind for the next record to be glued to.
            let _ = self.file.set_len(self.len);
            return Err(ApiError::store(format!(
                "Error in the backend data store: cannot write {}: {e}",
                self.path.display()
            )));
        }
        self.len += line.len() as u64;
        self.apply(record);
        Ok(())
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Register {
                subject,
                version,
                id,
                schema,
            } => {
                if let std::collections::hash_map::Entry::Vacant(slot) = self.by_id.entry(id) {
                    let text: Arc<str> = Arc::from(schema);
                    slot.insert(text.clone());
                    self.by_text.insert(text, id);
                }
                self.next_id = self.next_id.max(id.saturating_add(1));
                *self.id_uses.entry(id).or_default() += 1;
                let versions = self.subjects.entry(subject).or_default();
                versions.push(Version {
                    version,
                    id,
                    deleted: false,
                });
                versions.sort_by_key(|v| v.version);
            }
            Record::Delete {
                subject,
                versions,
                permanent,
            } => {
                let Some(entries) = self.subjects.get_mut(&subject) else {
                    return;
                };
                if permanent {
                    let mut removed = Vec::new();
                    entries.retain(|v| {
                        let gone = versions.contains(&v.version);
                        if gone {
                            removed.push(v.id);
                        }
                        !gone
                    });
                    for id in removed {
                        if let Some(uses) = self.id_uses.get_mut(&id) {
                            *uses = uses.saturating_sub(1);
                        }
                    }
                    if entries.is_empty() {
                        self.subjects.remove(&subject);
                        self.subject_levels.remove(&subject);
                    }
                } else {
                    for v in entries.iter_mut() {
                        if versions.contains(&v.version) {
                            v.deleted = true;
                        }
                    }
                }
            }
            Record::Config {
                subject,
                compatibility,
            } => match (subject, compatibility) {
                (None, Some(level)) => self.global = level,
                (None, None) => self.global = CompatibilityLevel::default(),
                (Some(s), Some(level)) => {
                    self.subject_levels.insert(s, level);
                }
                (Some(s), None) => {
                    self.subject_levels.remove(&s);
                }
            },
        }
    }

    fn versions_of(&self, subject: &str, deleted: Deleted) -> impl Iterator<Item = &Version> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(move |v| deleted == Deleted::Include || !v.deleted)
    }

    fn has_subject(&self, subject: &str, deleted: Deleted) -> bool {
        self.versions_of(subject, deleted).next().is_some()
    }

    fn subject_version(&self, subject: &str, v: &Version) -> SubjectVersion {
        SubjectVersion {
            subject: subject.to_owned(),
            version: v.version,
            id: v.id,
            schema: self
                .by_id
                .get(&v.id)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }

    fn parsed(&mut self, id: u32) -> Result<Arc<apache_avro::Schema>, ApiError> {
        if let Some(schema) = self.parsed.get(&id) {
            return Ok(schema.clone());
        }
        let text = self
            .by_id
            .get(&id)
            .ok_or_else(|| ApiError::schema_id_not_found(id))?;
        let schema = apache_avro::Schema::parse_str(text)
            .map(Arc::new)
            .map_err(|e| ApiError::store(format!("stored schema {id} no longer parses: {e}")))?;
        self.parsed.insert(id, schema.clone());
        Ok(schema)
    }

    /// The level in force for `subject`: its own, else the global one.
    pub fn level_in_scope(&self, subject: &str) -> CompatibilityLevel {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or(self.global)
    }

    /// Compatibility problems of `new` against the given (ascending) versions at the
    /// subject's level.
    fn problems(
        &mut self,
        subject: &str,
        new: &apache_avro::Schema,
        previous: &[Version],
    ) -> Result<Vec<String>, ApiError> {
        let level = self.level_in_scope(subject);
        if level == CompatibilityLevel::None || previous.is_empty() {
            return Ok(Vec::new());
        }
        let mut parsed = Vec::with_capacity(previous.len());
        for v in previous {
            parsed.push((v.version, self.parsed(v.id)?));
        }
        let refs: Vec<(u32, &apache_avro::Schema)> =
            parsed.iter().map(|(n, s)| (*n, s.as_ref())).collect();
        Ok(compat::check(level, new, &refs))
    }

    /// `POST /subjects/{s}/versions`: the schema's id, registering a new version unless the
    /// subject already has this schema (compared in canonical form).
    pub fn register(&mut self, subject: &str, schema: &str) -> Result<u32, ApiError> {
        let canonical = canonical(schema)?;
        if let Some(&id) = self.by_text.get(canonical.as_str()) {
            if self
                .versions_of(subject, Deleted::Exclude)
                .any(|v| v.id == id)
            {
                return Ok(id);
            }
        }
        let new = parse(&canonical)?;
        let previous: Vec<Version> = self
            .versions_of(subject, Deleted::Exclude)
            .copied()
            .collect();
        let problems = self.problems(subject, &new, &previous)?;
        if !problems.is_empty() {
            return Err(ApiError::new(
                crate::registry::api::codes::INCOMPATIBLE_SCHEMA,
                format!(
                    "Schema being registered is incompatible with an earlier schema for \
                     subject \"{subject}\", details: [{}, {{compatibility: '{}'}}]",
                    problems.join(", "),
                    self.level_in_scope(subject)
                ),
            ));
        }
        let id = self
            .by_text
            .get(canonical.as_str())
            .copied()
            .unwrap_or(self.next_id);
        let version = self
            .versions_of(subject, Deleted::Include)
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        self.commit(Record::Register {
            subject: subject.to_owned(),
            version,
            id,
            schema: canonical,
        })?;
        self.parsed.insert(id, Arc::new(new));
        tracing::info!(subject, version, id, "schema registered");
        Ok(id)
    }

    /// `POST /subjects/{s}`: the version of `subject` that has this schema.
    pub fn lookup(
        &self,
        subject: &str,
        schema: &str,
        deleted: Deleted,
    ) -> Result<SubjectVersion, ApiError> {
        let canonical = canonical(schema)?;
        let id = self.by_text.get(canonical.as_str()).copied();
        let found = self
            .versions_of(subject, deleted)
            .filter(|v| Some(v.id) == id)
            .last()
            .copied();
        match found {
            Some(v) => Ok(self.subject_version(subject, &v)),
            None if !self.has_subject(subject, deleted) => {
                Err(ApiError::subject_not_found(subject))
            }
            None => Err(ApiError::schema_not_found()),
        }
    }

    /// `GET /schemas/ids/{id}`: the schema text of an id still used by some subject version.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<str>, ApiError> {
        match (self.by_id.get(&id), self.id_uses.get(&id)) {
            (Some(text), Some(uses)) if *uses > 0 => Ok(text.clone()),
            _ => Err(ApiError::schema_id_not_found(id)),
        }
    }

    /// `GET /schemas/ids/{id}/versions`: the (subject, version) pairs that use an id.
    pub fn versions_of_id(
        &self,
        id: u32,
        deleted: Deleted,
    ) -> Result<Vec<(String, u32)>, ApiError> {
        self.schema_by_id(id)?;
        Ok(self
            .subjects
            .iter()
            .flat_map(|(s, vs)| vs.iter().map(move |v| (s, v)))
            .filter(|(_, v)| v.id == id && (deleted == Deleted::Include || !v.deleted))
            .map(|(s, v)| (s.clone(), v.version))
            .collect())
    }

    /// `GET /subjects`.
    pub fn subjects(&self, deleted: Deleted) -> Vec<String> {
        self.subjects
            .keys()
            .filter(|s| self.has_subject(s, deleted))
            .cloned()
            .collect()
    }

    /// `GET /subjects/{s}/versions`.
    pub fn versions(&self, subject: &str, deleted: Deleted) -> Result<Vec<u32>, ApiError> {
        let versions: Vec<u32> = self
            .versions_of(subject, deleted)
            .map(|v| v.version)
            .collect();
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        Ok(versions)
    }

    fn find(&self, subject: &str, version: VersionId, deleted: Deleted) -> Option<Version> {
        match version {
            VersionId::Latest => self.versions_of(subject, deleted).last().copied(),
            VersionId::Number(n) => self
                .versions_of(subject, deleted)
                .find(|v| v.version == n)
                .copied(),
        }
    }

    /// `GET /subjects/{s}/versions/{v}`.
    pub fn version(
        &self,
        subject: &str,
        version: VersionId,
        deleted: Deleted,
    ) -> Result<SubjectVersion, ApiError> {
        match self.find(subject, version, deleted) {
            Some(v) => Ok(self.subject_version(subject, &v)),
            None if !self.has_subject(subject, deleted) => {
                Err(ApiError::subject_not_found(subject))
            }
            None => Err(match version {
                VersionId::Number(n) => ApiError::version_not_found(n),
                VersionId::Latest => ApiError::subject_not_found(subject),
            }),
        }
    }

    /// `DELETE /subjects/{s}`: soft-deletes every live version, or (permanent) removes
    /// every version already soft-deleted. Returns the versions affected.
    pub fn delete_subject(&mut self, subject: &str, permanent: bool) -> Result<Vec<u32>, ApiError> {
        if !self.has_subject(subject, Deleted::Include) {
            return Err(ApiError::subject_not_found(subject));
        }
        let versions: Vec<u32> = if permanent {
            if self.has_subject(subject, Deleted::Exclude) {
                return Err(ApiError::subject_not_soft_deleted(subject));
            }
            self.versions_of(subject, Deleted::Include)
                .map(|v| v.version)
                .collect()
        } else {
            let live: Vec<u32> = self
                .versions_of(subject, Deleted::Exclude)
                .map(|v| v.version)
                .collect();
            if live.is_empty() {
                return Err(ApiError::subject_soft_deleted(subject));
            }
            live
        };
        self.commit(Record::Delete {
            subject: subject.to_owned(),
            versions: versions.clone(),
            permanent,
        })?;
        tracing::info!(subject, ?versions, permanent, "subject deleted");
        Ok(versions)
    }

    /// `DELETE /subjects/{s}/versions/{v}`.
    pub fn delete_version(
        &mut self,
        subject: &str,
        version: VersionId,
        permanent: bool,
    ) -> Result<u32, ApiError> {
        let lookup = if permanent {
            Deleted::Include
        } else {
            Deleted::Exclude
        };
        let Some(found) = self.find(subject, version, lookup) else {
            if !self.has_subject(subject, Deleted::Include) {
                return Err(ApiError::subject_not_found(subject));
            }
            return Err(match version {
                VersionId::Number(n) if self.find(subject, version, Deleted::Include).is_some() => {
                    ApiError::version_soft_deleted(subject, n)
                }
                VersionId::Number(n) => ApiError::version_not_found(n),
                VersionId::Latest => ApiError::subject_not_found(subject),
            });
        };
        if permanent && !found.deleted {
            return Err(ApiError::version_not_soft_deleted(subject, found.version));
        }
        self.commit(Record::Delete {
            subject: subject.to_owned(),
            versions: vec![found.version],
            permanent,
        })?;
        tracing::info!(
            subject,
            version = found.version,
            permanent,
            "version deleted"
        );
        Ok(found.version)
    }

    /// `POST /compatibility/subjects/{s}/versions[/{v}]`: the problems found (empty means
    /// compatible). A missing `latest` is compatible, as in Confluent.
    pub fn test_compatibility(
        &mut self,
        subject: &str,
        schema: &str,
        against: Against,
    ) -> Result<Vec<String>, ApiError> {
        let previous: Vec<Version> = match against {
            Against::AllVersions => self
                .versions_of(subject, Deleted::Exclude)
                .copied()
                .collect(),
            Against::Version(version) => match self.find(subject, version, Deleted::Exclude) {
                Some(v) => vec![v],
                None => match version {
                    VersionId::Latest => Vec::new(),
                    VersionId::Number(n) => return Err(ApiError::version_not_found(n)),
                },
            },
        };
        let new = parse(&canonical(schema)?)?;
        self.problems(subject, &new, &previous)
    }

    pub fn global_level(&self) -> CompatibilityLevel {
        self.global
    }

    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// `PUT /config` (`subject` None) or `PUT /config/{s}`.
    pub fn set_level(
        &mut self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), ApiError> {
        self.commit(Record::Config {
            subject: subject.map(str::to_owned),
            compatibility: Some(level),
        })?;
        tracing::info!(subject = subject.unwrap_or("(global)"), %level, "compatibility set");
        Ok(())
    }

    /// `DELETE /config` (back to BACKWARD) or `DELETE /config/{s}` (back to the global
    /// level); returns the level that was removed.
    pub fn delete_level(&mut self, subject: Option<&str>) -> Result<CompatibilityLevel, ApiError> {
        let previous = match subject {
            None => self.global,
            Some(s) => self
                .subject_level(s)
                .ok_or_else(|| ApiError::subject_not_found(s))?,
        };
        self.commit(Record::Config {
            subject: subject.map(str::to_owned),
            compatibility: None,
        })?;
        Ok(previous)
    }
}

fn canonical(schema: &str) -> Result<String, ApiError> {
    canonical_form(schema)
        .map_err(|e| ApiError::invalid_schema(format!("Invalid schema of type AVRO, details: {e}")))
}

fn parse(canonical: &str) -> Result<apache_avro::Schema, ApiError> {
    apache_avro::Schema::parse_str(canonical)
        .map_err(|e| ApiError::invalid_schema(format!("Invalid schema of type AVRO, details: {e}")))
}
