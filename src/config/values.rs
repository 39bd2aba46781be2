//! Scalar configuration types that deserialize with `${ENV}` expansion: strings,
//! secrets that never print, ports and human durations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::interpolate::expand_env;

/// A string with `${VAR}` / `${VAR:-default}` expanded from the environment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EnvString(String);

impl EnvString {
    /// Wraps an already-expanded string (for defaults and tests).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for EnvString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        expand_env(&raw).map(Self).map_err(de::Error::custom)
    }
}

/// A secret (password, salt): expanded like `EnvString`, but its `Debug` and
/// `Display` never show the value, so it can't leak through a log line.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret's text, for the one place that must send it (a login).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Reads a secret from a file, dropping one trailing newline (as `echo` writes).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Ok(Self::new(trimmed))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EnvString::deserialize(deserializer).map(|s| Self::new(s.0))
    }
}

/// Accepts either a native TOML value of `T` or a string (after `${ENV}` expansion)
/// that parses as `T`, so `port = 5432` and `port = "${PGPORT}"` both work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvValue<T>(pub T);

impl<'de, T> Deserialize<'de> for EnvValue<T>
where
    T: FromStr + TryFrom<i64>,
    <T as FromStr>::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: FromStr + TryFrom<i64>,
            <T as FromStr>::Err: fmt::Display,
        {
            type Value = EnvValue<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, or a string such as \"${PORT}\" that expands to one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::try_from(v)
                    .map(EnvValue)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))?;
                self.visit_i64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let expanded = expand_env(v).map_err(E::custom)?;
                expanded
                    .trim()
                    .parse::<T>()
                    .map(EnvValue)
                    .map_err(|e| E::custom(format!("`{expanded}` is not a valid number: {e}")))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A duration written as a number and a unit: `500ms`, `10s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (n, unit) = number_and_unit(s, "500ms, 10s, 5m or 1h")?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{s}`; use ms, s, m or h"
                ))
            }
        };
        Ok(Self(d))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = EnvString::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// `10s` -> (10, "s"): a whole number and the unit after it (spaces between allowed).
/// `examples` goes into the errors.
fn number_and_unit<'a>(s: &'a str, examples: &str) -> Result<(u64, &'a str), String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. {examples}"))?;
    let (digits, unit) = s.split_at(split);
    let n = digits
        .parse()
        .map_err(|_| format!("`{s}` does not start with a whole number; write e.g. {examples}"))?;
    Ok((n, unit.trim()))
}

/// A size in bytes written with a unit (`512MiB`, `10GiB`, `64kB`; binary and decimal
/// units, `B` for plain bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (n, unit) = number_and_unit(s, "512MiB or 10GiB")?;
        let factor: u64 = match unit {
            "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            "TB" => 1_000_000_000_000,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{s}`; use B, kB, KiB, MB, MiB, GB, GiB, TB or TiB"
                ))
            }
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = EnvString::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("10GiB".parse::<ByteSize>().unwrap().0, 10 << 30);
        assert_eq!("64kB".parse::<ByteSize>().unwrap().0, 64_000);
        assert_eq!("7B".parse::<ByteSize>().unwrap().0, 7);
        assert!("10".parse::<ByteSize>().unwrap_err().contains("no unit"));
        assert!("10 GB/s"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("99999999999TiB"
            .parse::<ByteSize>()
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            "500ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "10s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(10)
        );
        assert_eq!(
            "2m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(120)
        );
        assert_eq!(
            "1h".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(3600)
        );
        assert!("10"
            .parse::<HumanDuration>()
            .unwrap_err()
            .contains("no unit"));
        assert!("10 days"
            .parse::<HumanDuration>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("s".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_file_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "s3cret");
    }

    /// Every secret a connector file can hold stays out of the `{:?}` of every config type
    /// it reaches (logs print them with `?` fields).
    #[test]
    fn no_secret_appears_in_debug_output() {
        std::env::set_var("WALCAST_TEST_DEBUG_SECRET", "env-s3cret-value");
        let c = crate::config::parse_connector(
            std::path::Path::new("connectors/shop.toml"),
            r#"
    name = "shop"
    [source]
    dbname = "shop"
    user = "walcast"
    password = "${WALCAST_TEST_DEBUG_SECRET}"
    [kafka]
    bootstrap_servers = "k:9092"
    [kafka.producer]
    "sasl.password" = "kafka-s3cret-value"
    "ssl.key.password" = "key-s3cret-value"
    [registry]
    url = "https://registry:8081"
    username = "svc"
    password = "registry-s3cret-value"
    [tables."public.customers"]
    mask.email = { hash = "sha256", salt = "salt-s3cret-value" }
    "#,
        )
        .unwrap();
        let secrets = [
            "env-s3cret-value",
            "kafka-s3cret-value",
            "key-s3cret-value",
            "registry-s3cret-value",
            "salt-s3cret-value",
        ];
        let shown = [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", c.source),
            format!("{:?}", c.kafka),
            format!("{:?}", c.registry),
            format!("{:?}", c.tables),
            format!("{:?}", c.tables[0].masks),
        ];
        for text in &shown {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        // They are there, just not shown.
        assert_eq!(
            c.source.password.as_ref().unwrap().expose(),
            "env-s3cret-value"
        );
        assert_eq!(
            c.registry.password.as_ref().unwrap().expose(),
            "registry-s3cret-value"
        );
    }
}
