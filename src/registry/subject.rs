//! Subject naming strategies (Confluent's `*.subject.name.strategy`); no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Whether a schema describes a record's key or its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    Key,
    Value,
}

/// How the subject a schema is registered under is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubjectNameStrategy {
    /// `<topic>-key` / `<topic>-value` (Confluent's default).
    #[default]
    TopicName,
    /// The record's full name (`<namespace>.<name>`), whatever the topic.
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

impl SubjectNameStrategy {
    /// The subject for a `kind` schema of `topic` whose top-level record is named
    /// `record_full_name` (used by the record strategies only).
    pub fn subject(self, topic: &str, kind: SubjectKind, record_full_name: &str) -> String {
        match self {
            Self::TopicName => match kind {
                SubjectKind::Key => format!("{topic}-key"),
                SubjectKind::Value => format!("{topic}-value"),
            },
            Self::RecordName => record_full_name.to_owned(),
            Self::TopicRecordName => format!("{topic}-{record_full_name}"),
        }
    }

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopicName => "topic_name",
            Self::RecordName => "record_name",
            Self::TopicRecordName => "topic_record_name",
        }
    }
}

/// The subject under `strategy` (see [`SubjectNameStrategy::subject`]).
pub fn subject_name(
    strategy: SubjectNameStrategy,
    topic: &str,
    kind: SubjectKind,
    record_full_name: &str,
) -> String {
    strategy.subject(topic, kind, record_full_name)
}

impl fmt::Display for SubjectNameStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubjectNameStrategy {
    type Err = String;

    /// Accepts `topic_name`, `TopicNameStrategy` and Confluent's class name
    /// `io.confluent.kafka.serializers.subject.TopicNameStrategy` (likewise for the others).
    fn from_str(s: &str) -> Result<Self, String> {
        let short = s.trim().rsplit('.').next().unwrap_or_default();
        let key: String = short
            .trim_end_matches("Strategy")
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "topicname" => Ok(Self::TopicName),
            "recordname" => Ok(Self::RecordName),
            "topicrecordname" => Ok(Self::TopicRecordName),
            _ => Err(format!(
                "unknown subject name strategy \"{s}\"; use topic_name, record_name or \
                 topic_record_name"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SubjectNameStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_name_subjects_like_confluent() {
        let record = "shop.public.orders.Value";
        assert_eq!(
            subject_name(
                SubjectNameStrategy::TopicName,
                "shop.public.orders",
                SubjectKind::Key,
                record
            ),
            "shop.public.orders-key"
        );
        assert_eq!(
            SubjectNameStrategy::TopicName.subject("t", SubjectKind::Value, record),
            "t-value"
        );
        assert_eq!(
            SubjectNameStrategy::RecordName.subject("t", SubjectKind::Value, record),
            record
        );
        assert_eq!(
            SubjectNameStrategy::TopicRecordName.subject("t", SubjectKind::Key, record),
            "t-shop.public.orders.Value"
        );
    }

    #[test]
    fn strategy_names_parse() {
        for (text, want) in [
            ("topic_name", SubjectNameStrategy::TopicName),
            ("TopicNameStrategy", SubjectNameStrategy::TopicName),
            (
                "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
                SubjectNameStrategy::TopicRecordName,
            ),
            ("record_name", SubjectNameStrategy::RecordName),
        ] {
            assert_eq!(text.parse::<SubjectNameStrategy>().unwrap(), want, "{text}");
        }
        assert!("topic".parse::<SubjectNameStrategy>().is_err());
    }
}
