//! The session settings every walcast connection fixes, so values reach the parser in
//! one text form whatever the server's, database's or role's defaults.

/// Settings that fix the text form of values (dates, intervals, floats, bytea, money,
/// string literals). The replication connection sends them as startup parameters; SQL
/// connections (catalog, snapshot, setup) as the startup packet's `options`. Either way
/// they outrank `ALTER ROLE … SET` and `ALTER DATABASE … SET`, so a snapshot row and a
/// streamed change of the same value are parsed from the same text.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("standard_conforming_strings", "on"),
];

/// [`SESSION_SETTINGS`] as the startup `options` string (`-c name=value …`, with spaces
/// and backslashes escaped as the server's option parser expects).
pub fn startup_options() -> String {
    let mut out = String::new();
    for (name, value) in SESSION_SETTINGS {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        for c in format!("{name}={value}").chars() {
            if c == ' ' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_escape_spaces_and_name_every_setting() {
        let options = startup_options();
        assert!(options.starts_with("-c client_encoding=UTF8 -c DateStyle=ISO,\\ MDY "));
        assert_eq!(options.matches("-c ").count(), SESSION_SETTINGS.len());
        assert!(options.ends_with("-c standard_conforming_strings=on"));
    }
}
