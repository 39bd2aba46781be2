//! Validation of the transform settings: `[transforms.unwrap]`, `[transforms.route]`
//! and a table's `outbox`, with Debezium's option names and defaults.

use std::ops::Range;

use super::connector::{Outbox, Route};
use super::error::ConfigError;
use super::model::{OutboxSection, RouteSection, UnwrapSection};
use super::selector::TableSelector;
use super::validate::Validator;
use super::values::EnvString;
use crate::codec::json_payload::NullBehavior;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn outbox(
        &self,
        o: OutboxSection,
        selector: &TableSelector,
        span: &Range<usize>,
    ) -> Result<Outbox, ConfigError> {
        let fail = |message: String| self.err(span, format!("table {selector} outbox: {message}"));
        let regex = o
            .route_topic_regex
            .unwrap_or_else(|| "(?<routedByValue>.*)".to_owned());
        let route_regex = regex::Regex::new(&regex).map_err(|e| {
            fail(format!(
                "route_topic_regex `{regex}` is not a regular expression: {e}"
            ))
        })?;
        let mut headers = Vec::new();
        let mut envelope = Vec::new();
        let mut partition = None;
        for item in o
            .table_fields_additional_placement
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let parts: Vec<&str> = item.split(':').map(str::trim).collect();
            match parts.as_slice() {
                [column, place] | [column, place, _] if place.eq_ignore_ascii_case("header") => {
                    let alias = parts.get(2).copied().unwrap_or(column);
                    headers.push(((*column).to_owned(), &*Box::leak(alias.to_owned().into_boxed_str())));
                }
                [column, place] | [column, place, _] if place.eq_ignore_ascii_case("envelope") => {
                    let alias = parts.get(2).copied().unwrap_or(column);
                    envelope.push(((*column).to_owned(), alias.to_owned()));
                }
                // As in Debezium, an alias has no effect here, and the last one wins.
                [column, place] | [column, place, _] if place.eq_ignore_ascii_case("partition") => {
                    partition = Some((*column).to_owned());
                }
                [_, place] | [_, place, _] => {
                    return Err(fail(format!(
                        "table_fields_additional_placement `{item}`: placement {place} is not supported (use column:header[:alias], column:envelope[:alias] or column:partition)"
                    )))
                }
                _ => {
                    return Err(fail(format!(
                        "table_fields_additional_placement `{item}` is not column:header[:alias]"
                    )))
                }
            }
        }
        Ok(Outbox {
            event_id: o.table_field_event_id.unwrap_or_else(|| "id".into()),
            event_key: o
                .table_field_event_key
                .unwrap_or_else(|| "aggregateid".into()),
            payload: o
                .table_field_event_payload
                .unwrap_or_else(|| "payload".into()),
            route_by: o.route_by_field.unwrap_or_else(|| "aggregatetype".into()),
            route_regex,
            route_replacement: o
                .route_topic_replacement
                .unwrap_or_else(|| "${topic_prefix}.outbox.${routedByValue}".into()),
            headers,
            envelope,
            partition,
            expand_json: match (
                o.table_expand_json_payload.unwrap_or(false),
                o.table_json_payload_null_behavior.as_deref(),
            ) {
                (false, _) => None,
                (true, None | Some("ignore")) => Some(NullBehavior::Ignore),
                (true, Some("optional_bytes")) => Some(NullBehavior::OptionalBytes),
                (true, Some(other)) => {
                    return Err(fail(format!(
                        "table_json_payload_null_behavior `{other}` is not ignore or optional_bytes"
                    )))
                }
            },
            timestamp: o.table_field_event_timestamp,
        })
    }

    pub(super) fn route(&self, r: RouteSection) -> Result<Route, ConfigError> {
        let anchored = |text: &Spanned<String>, what: &str| {
            regex::Regex::new(&format!("^(?:{})$", text.get_ref())).map_err(|e| {
                self.err(
                    &text.span(),
                    format!(
                        "[transforms.route] {what} `{}` is not a regular expression: {e}",
                        text.get_ref()
                    ),
                )
            })
        };
        let key_field = match (&r.key_field_regex, r.key_field_replacement) {
            (Some(regex), Some(replacement)) => {
                Some((anchored(regex, "key_field_regex")?, replacement))
            }
            (Some(regex), None) => {
                return Err(self.err(
                    &regex.span(),
                    "[transforms.route] key_field_regex needs key_field_replacement",
                ))
            }
            (None, _) => None,
        };
        Ok(Route {
            topic_regex: anchored(&r.topic_regex, "topic_regex")?,
            topic_replacement: r.topic_replacement,
            key_field_name: r.key_enforce_uniqueness.unwrap_or(true).then(|| {
                r.key_field_name
                    .unwrap_or_else(|| "__dbz__physicalTableIdentifier".to_owned())
            }),
            key_field,
        })
    }

    pub(super) fn unwrap(
        &self,
        u: UnwrapSection,
    ) -> Result<crate::codec::unwrap::Unwrap, ConfigError> {
        use crate::codec::unwrap::{DeleteHandling, Reference, Unwrap};
        let delete_handling = match &u.delete_tombstone_handling_mode {
            None => DeleteHandling::default(),
            Some(m) => DeleteHandling::parse(m.get_ref()).map_err(|reason| {
                self.err(
                    &m.span(),
                    format!("[transforms.unwrap] delete_tombstone_handling_mode: {reason}"),
                )
            })?,
        };
        let list = |text: &Option<Spanned<EnvString>>, prefix: &Option<String>, what: &str| {
            let Some(text) = text else {
                return Ok(Vec::new());
            };
            Reference::parse_list(text.get_ref(), prefix.as_deref().unwrap_or("__")).map_err(
                |reason| {
                    self.err(
                        &text.span(),
                        format!("[transforms.unwrap] {what}: {reason}"),
                    )
                },
            )
        };
        Ok(Unwrap {
            delete_handling,
            add_fields: list(&u.add_fields, &u.add_fields_prefix, "add_fields")?,
            add_headers: list(&u.add_headers, &u.add_headers_prefix, "add_headers")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::codec::json_payload::NullBehavior;
    use crate::config::parse_connector;

    fn outbox(options: &str) -> Result<crate::config::Outbox, String> {
        let text = format!(
            "name = \"shop\"\n[source]\ndbname = \"shop\"\nuser = \"walcast\"\n\
             [kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n\
             [registry]\nurl = \"http://127.0.0.1:8081\"\n\
             [tables.\"public.outbox\"]\noutbox = {{ {options} }}\n"
        );
        let connector =
            parse_connector(Path::new("shop.toml"), &text).map_err(|e| e.to_string())?;
        Ok(connector.tables[0].outbox.as_deref().cloned().unwrap())
    }

    #[test]
    fn expansion_partition_and_timestamp_options_are_read() {
        let o = outbox(
            "table_expand_json_payload = true, table_json_payload_null_behavior = \"optional_bytes\", \
             table_fields_additional_placement = \"type:header:eventType, part:partition:ignored\", \
             table_field_event_timestamp = \"created\"",
        )
        .unwrap();
        assert_eq!(o.expand_json, Some(NullBehavior::OptionalBytes));
        assert_eq!(o.partition.as_deref(), Some("part"));
        assert_eq!(o.timestamp.as_deref(), Some("created"));
        assert_eq!(o.headers, vec![("type".to_owned(), "eventType")]);
        let plain = outbox("").unwrap();
        assert_eq!(
            (plain.expand_json, plain.partition, plain.timestamp),
            (None, None, None)
        );
        assert_eq!(
            outbox("table_expand_json_payload = true")
                .unwrap()
                .expand_json,
            Some(NullBehavior::Ignore)
        );
    }

    #[test]
    fn an_unknown_null_behavior_or_placement_is_refused() {
        let err =
            outbox("table_expand_json_payload = true, table_json_payload_null_behavior = \"drop\"")
                .unwrap_err();
        assert!(
            err.contains("table_json_payload_null_behavior `drop` is not ignore or optional_bytes"),
            "{err}"
        );
        let err = outbox("table_fields_additional_placement = \"type:body\"").unwrap_err();
        assert!(err.contains("placement body is not supported"), "{err}");
    }
}
