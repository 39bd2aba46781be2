//! How to parse a column: PostgreSQL type OIDs and names mapped to the parser walcast
//! uses for their text output. Pure lookup tables; no catalog access.
//!
//! Built-in types have fixed OIDs ([`builtin`]). Extension types (hstore, citext),
//! enums, domains and composite types get OIDs when they are created, so the caller
//! resolves them from the catalog: by name ([`from_type_name`]), by `typtype`
//! (enum, composite, range, multirange) or by following a domain to its base type.

use std::fmt;

/// The parser for one column's text form. Domains are resolved to their base type by
/// the caller; a type walcast does not know is [`PgType::Unknown`] (kept as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    /// text, varchar, name, citext, `unknown`: text kept as sent.
    Text,
    /// char(n): kept with the blank padding PostgreSQL sends.
    Bpchar,
    /// `"char"` (OID 18), the one-byte internal type.
    Char,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    Xml,
    Inet,
    Cidr,
    MacAddr,
    MacAddr8,
    Bit,
    VarBit,
    PgLsn,
    Point,
    Line,
    Lseg,
    Box,
    Path,
    Polygon,
    Circle,
    TsVector,
    TsQuery,
    Hstore,
    /// Any enum type (its labels come from the catalog).
    Enum,
    /// A range over the element type (int4range → `Range(Int4)`).
    Range(Box<PgType>),
    /// A multirange over the element type (int4multirange → `Multirange(Int4)`).
    Multirange(Box<PgType>),
    /// An array of the element type (any number of dimensions).
    Array(Box<PgType>),
    /// A composite (row) type, kept as its text form.
    Composite,
    /// A type walcast has no parser for, kept as its text form.
    Unknown,
}

impl PgType {
    /// The delimiter between elements of an array of this type (`pg_type.typdelim`):
    /// `;` for box, `,` for every other built-in type.
    pub fn delimiter(&self) -> char {
        match self {
            PgType::Box => ';',
            _ => ',',
        }
    }

    /// A short name for messages: PostgreSQL's type name where there is one.
    pub fn name(&self) -> &'static str {
        match self {
            PgType::Bool => "bool",
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Oid => "oid",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Numeric => "numeric",
            PgType::Money => "money",
            PgType::Text => "text",
            PgType::Bpchar => "bpchar",
            PgType::Char => "\"char\"",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::TimeTz => "timetz",
            PgType::Timestamp => "timestamp",
            PgType::TimestampTz => "timestamptz",
            PgType::Interval => "interval",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Xml => "xml",
            PgType::Inet => "inet",
            PgType::Cidr => "cidr",
            PgType::MacAddr => "macaddr",
            PgType::MacAddr8 => "macaddr8",
            PgType::Bit => "bit",
            PgType::VarBit => "varbit",
            PgType::PgLsn => "pg_lsn",
            PgType::Point => "point",
            PgType::Line => "line",
            PgType::Lseg => "lseg",
            PgType::Box => "box",
            PgType::Path => "path",
            PgType::Polygon => "polygon",
            PgType::Circle => "circle",
            PgType::TsVector => "tsvector",
            PgType::TsQuery => "tsquery",
            PgType::Hstore => "hstore",
            PgType::Enum => "enum",
            PgType::Range(_) => "range",
            PgType::Multirange(_) => "multirange",
            PgType::Array(_) => "array",
            PgType::Composite => "composite",
            PgType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Range(elem) => write!(f, "range of {elem}"),
            PgType::Multirange(elem) => write!(f, "multirange of {elem}"),
            PgType::Array(elem) => write!(f, "{elem}[]"),
            other => f.write_str(other.name()),
        }
    }
}

/// Built-in scalar types by OID (PostgreSQL's `pg_type.dat`), with the OID of their
/// array type (`typarray`). Checked against `pg_type` of PostgreSQL 15.
const SCALARS: &[(u32, u32, PgType)] = &[
    (16, 1000, PgType::Bool),
    (17, 1001, PgType::Bytea),
    (18, 1002, PgType::Char),
    (19, 1003, PgType::Text), // name
    (20, 1016, PgType::Int8),
    (21, 1005, PgType::Int2),
    (23, 1007, PgType::Int4),
    (25, 1009, PgType::Text),
    (26, 1028, PgType::Oid),
    (114, 199, PgType::Json),
    (142, 143, PgType::Xml),
    (600, 1017, PgType::Point),
    (601, 1018, PgType::Lseg),
    (602, 1019, PgType::Path),
    (603, 1020, PgType::Box),
    (604, 1027, PgType::Polygon),
    (628, 629, PgType::Line),
    (650, 651, PgType::Cidr),
    (700, 1021, PgType::Float4),
    (701, 1022, PgType::Float8),
    (718, 719, PgType::Circle),
    (774, 775, PgType::MacAddr8),
    (790, 791, PgType::Money),
    (829, 1040, PgType::MacAddr),
    (869, 1041, PgType::Inet),
    (1042, 1014, PgType::Bpchar),
    (1043, 1015, PgType::Text), // varchar
    (1082, 1182, PgType::Date),
    (1083, 1183, PgType::Time),
    (1114, 1115, PgType::Timestamp),
    (1184, 1185, PgType::TimestampTz),
    (1186, 1187, PgType::Interval),
    (1266, 1270, PgType::TimeTz),
    (1560, 1561, PgType::Bit),
    (1562, 1563, PgType::VarBit),
    (1700, 1231, PgType::Numeric),
    (2950, 2951, PgType::Uuid),
    (3220, 3221, PgType::PgLsn),
    (3614, 3643, PgType::TsVector),
    (3615, 3645, PgType::TsQuery),
    (3802, 3807, PgType::Jsonb),
    (2249, 2287, PgType::Composite), // record
];

/// Built-in ranges: (range OID, its array, multirange OID, its array, element type).
/// Multiranges exist from PostgreSQL 14 on.
const RANGES: &[(u32, u32, u32, u32, PgType)] = &[
    (3904, 3905, 4451, 6150, PgType::Int4),
    (3906, 3907, 4532, 6151, PgType::Numeric),
    (3908, 3909, 4533, 6152, PgType::Timestamp),
    (3910, 3911, 4534, 6153, PgType::TimestampTz),
    (3912, 3913, 4535, 6155, PgType::Date),
    (3926, 3927, 4536, 6157, PgType::Int8),
];

/// `unknown` (705), a pseudo-type with a text form (untyped literals).
const UNKNOWN_OID: u32 = 705;

/// The parser for a built-in type OID, or `None` for an OID that is not built in (or a
/// built-in type walcast has no parser for, such as `regclass`: use
/// [`PgType::Unknown`] then). Array OIDs map to [`PgType::Array`] of their element.
pub fn builtin(oid: u32) -> Option<PgType> {
    if oid == UNKNOWN_OID {
        return Some(PgType::Text);
    }
    for (scalar, array, ty) in SCALARS {
        if oid == *scalar {
            return Some(ty.clone());
        }
        if oid == *array {
            return Some(PgType::Array(Box::new(ty.clone())));
        }
    }
    for (range, range_array, multi, multi_array, elem) in RANGES {
        let elem = Box::new(elem.clone());
        if oid == *range {
            return Some(PgType::Range(elem));
        }
        if oid == *multi {
            return Some(PgType::Multirange(elem));
        }
        if oid == *range_array {
            return Some(PgType::Array(Box::new(PgType::Range(elem))));
        }
        if oid == *multi_array {
            return Some(PgType::Array(Box::new(PgType::Multirange(elem))));
        }
    }
    None
}

/// The parser for a type known by name: `pg_type.typname` (`int4`, `_int4` for its
/// array, `hstore`, `citext`; `char` is the one-byte `"char"`, as in `pg_type`, and
/// `bpchar` or `character` is char(n)), SQL's spelling as `format_type` prints it (`integer`,
/// `timestamp with time zone`, `character varying(10)`, `integer[]`), or a schema-
/// qualified name (`public.hstore`). Enums, composites and domains are not found by
/// name (their names are the user's): the caller resolves them from `typtype`.
pub fn from_type_name(name: &str) -> Option<PgType> {
    let name = name.trim();
    // Schema-qualified: `public.hstore`, `extensions._citext`.
    let name = match name.rsplit_once('.') {
        Some((_, bare)) => bare,
        None => name,
    };
    // An array: `integer[]` (any number of `[]`: PostgreSQL has one array type per
    // element type) or typname's `_int4`.
    let mut is_array = false;
    let mut name = name;
    while let Some(elem) = name.strip_suffix("[]") {
        name = elem.trim_end();
        is_array = true;
    }
    if !is_array {
        if let Some(elem) = name.strip_prefix('_') {
            name = elem;
            is_array = true;
        }
    }
    let ty = scalar_from_name(name)?;
    Some(if is_array {
        PgType::Array(Box::new(ty))
    } else {
        ty
    })
}

fn scalar_from_name(name: &str) -> Option<PgType> {
    // `character varying(10)`, `numeric(10,2)`, `timestamp(3) with time zone`.
    let name = strip_typmod(name).trim().to_ascii_lowercase();
    if name == "\"char\"" {
        return Some(PgType::Char);
    }
    let ty = match name.trim_matches('"') {
        "bool" | "boolean" => PgType::Bool,
        "int2" | "smallint" => PgType::Int2,
        "int4" | "integer" | "int" => PgType::Int4,
        "int8" | "bigint" => PgType::Int8,
        "oid" => PgType::Oid,
        "float4" | "real" => PgType::Float4,
        "float8" | "double precision" => PgType::Float8,
        "numeric" | "decimal" => PgType::Numeric,
        "money" => PgType::Money,
        "text" | "varchar" | "character varying" | "name" | "citext" | "unknown" => PgType::Text,
        "bpchar" | "character" => PgType::Bpchar,
        // pg_type.typname of OID 18 (SQL's `char` is bpchar, but typname wins here).
        "char" => PgType::Char,
        "bytea" => PgType::Bytea,
        "date" => PgType::Date,
        "time" | "time without time zone" => PgType::Time,
        "timetz" | "time with time zone" => PgType::TimeTz,
        "timestamp" | "timestamp without time zone" => PgType::Timestamp,
        "timestamptz" | "timestamp with time zone" => PgType::TimestampTz,
        "interval" => PgType::Interval,
        "uuid" => PgType::Uuid,
        "json" => PgType::Json,
        "jsonb" => PgType::Jsonb,
        "xml" => PgType::Xml,
        "inet" => PgType::Inet,
        "cidr" => PgType::Cidr,
        "macaddr" => PgType::MacAddr,
        "macaddr8" => PgType::MacAddr8,
        "bit" => PgType::Bit,
        "varbit" | "bit varying" => PgType::VarBit,
        "pg_lsn" => PgType::PgLsn,
        "point" => PgType::Point,
        "line" => PgType::Line,
        "lseg" => PgType::Lseg,
        "box" => PgType::Box,
        "path" => PgType::Path,
        "polygon" => PgType::Polygon,
        "circle" => PgType::Circle,
        "tsvector" => PgType::TsVector,
        "tsquery" => PgType::TsQuery,
        "hstore" => PgType::Hstore,
        "record" => PgType::Composite,
        "int4range" => PgType::Range(Box::new(PgType::Int4)),
        "int8range" => PgType::Range(Box::new(PgType::Int8)),
        "numrange" => PgType::Range(Box::new(PgType::Numeric)),
        "tsrange" => PgType::Range(Box::new(PgType::Timestamp)),
        "tstzrange" => PgType::Range(Box::new(PgType::TimestampTz)),
        "daterange" => PgType::Range(Box::new(PgType::Date)),
        "int4multirange" => PgType::Multirange(Box::new(PgType::Int4)),
        "int8multirange" => PgType::Multirange(Box::new(PgType::Int8)),
        "nummultirange" => PgType::Multirange(Box::new(PgType::Numeric)),
        "tsmultirange" => PgType::Multirange(Box::new(PgType::Timestamp)),
        "tstzmultirange" => PgType::Multirange(Box::new(PgType::TimestampTz)),
        "datemultirange" => PgType::Multirange(Box::new(PgType::Date)),
        _ => return None,
    };
    Some(ty)
}

/// Removes a type modifier: `numeric(10,2)` → `numeric`, `timestamp(3) with time
/// zone` → `timestamp with time zone`. `"char"` keeps its quotes.
fn strip_typmod(name: &str) -> String {
    match (name.find('('), name.find(')')) {
        (Some(open), Some(close)) if open < close => {
            let before = name[..open].trim_end();
            let after = name[close + 1..].trim_start();
            if after.is_empty() {
                before.to_string()
            } else {
                format!("{before} {after}")
            }
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(t: PgType) -> PgType {
        PgType::Array(Box::new(t))
    }

    #[test]
    fn scalar_oids() {
        let cases = [
            (16, PgType::Bool),
            (17, PgType::Bytea),
            (18, PgType::Char),
            (19, PgType::Text),
            (20, PgType::Int8),
            (21, PgType::Int2),
            (23, PgType::Int4),
            (25, PgType::Text),
            (26, PgType::Oid),
            (114, PgType::Json),
            (142, PgType::Xml),
            (600, PgType::Point),
            (601, PgType::Lseg),
            (602, PgType::Path),
            (603, PgType::Box),
            (604, PgType::Polygon),
            (628, PgType::Line),
            (650, PgType::Cidr),
            (700, PgType::Float4),
            (701, PgType::Float8),
            (705, PgType::Text),
            (718, PgType::Circle),
            (774, PgType::MacAddr8),
            (790, PgType::Money),
            (829, PgType::MacAddr),
            (869, PgType::Inet),
            (1042, PgType::Bpchar),
            (1043, PgType::Text),
            (1082, PgType::Date),
            (1083, PgType::Time),
            (1114, PgType::Timestamp),
            (1184, PgType::TimestampTz),
            (1186, PgType::Interval),
            (1266, PgType::TimeTz),
            (1560, PgType::Bit),
            (1562, PgType::VarBit),
            (1700, PgType::Numeric),
            (2249, PgType::Composite),
            (2950, PgType::Uuid),
            (3220, PgType::PgLsn),
            (3614, PgType::TsVector),
            (3615, PgType::TsQuery),
            (3802, PgType::Jsonb),
        ];
        for (oid, ty) in cases {
            assert_eq!(builtin(oid), Some(ty), "oid {oid}");
        }
    }

    #[test]
    fn array_oids() {
        let cases = [
            (1000, PgType::Bool),
            (1001, PgType::Bytea),
            (1002, PgType::Char),
            (1003, PgType::Text),
            (1016, PgType::Int8),
            (1005, PgType::Int2),
            (1007, PgType::Int4),
            (1009, PgType::Text),
            (1028, PgType::Oid),
            (199, PgType::Json),
            (143, PgType::Xml),
            (1017, PgType::Point),
            (1018, PgType::Lseg),
            (1019, PgType::Path),
            (1020, PgType::Box),
            (1027, PgType::Polygon),
            (629, PgType::Line),
            (651, PgType::Cidr),
            (1021, PgType::Float4),
            (1022, PgType::Float8),
            (719, PgType::Circle),
            (775, PgType::MacAddr8),
            (791, PgType::Money),
            (1040, PgType::MacAddr),
            (1041, PgType::Inet),
            (1014, PgType::Bpchar),
            (1015, PgType::Text),
            (1182, PgType::Date),
            (1183, PgType::Time),
            (1115, PgType::Timestamp),
            (1185, PgType::TimestampTz),
            (1187, PgType::Interval),
            (1270, PgType::TimeTz),
            (1561, PgType::Bit),
            (1563, PgType::VarBit),
            (1231, PgType::Numeric),
            (2287, PgType::Composite),
            (2951, PgType::Uuid),
            (3221, PgType::PgLsn),
            (3643, PgType::TsVector),
            (3645, PgType::TsQuery),
            (3807, PgType::Jsonb),
        ];
        for (oid, elem) in cases {
            assert_eq!(builtin(oid), Some(arr(elem)), "oid {oid}");
        }
    }

    #[test]
    fn range_and_multirange_oids() {
        let r = |t| PgType::Range(Box::new(t));
        let m = |t| PgType::Multirange(Box::new(t));
        let cases = [
            (3904, r(PgType::Int4)),
            (3906, r(PgType::Numeric)),
            (3908, r(PgType::Timestamp)),
            (3910, r(PgType::TimestampTz)),
            (3912, r(PgType::Date)),
            (3926, r(PgType::Int8)),
            (3905, arr(r(PgType::Int4))),
            (3907, arr(r(PgType::Numeric))),
            (3909, arr(r(PgType::Timestamp))),
            (3911, arr(r(PgType::TimestampTz))),
            (3913, arr(r(PgType::Date))),
            (3927, arr(r(PgType::Int8))),
            (4451, m(PgType::Int4)),
            (4532, m(PgType::Numeric)),
            (4533, m(PgType::Timestamp)),
            (4534, m(PgType::TimestampTz)),
            (4535, m(PgType::Date)),
            (4536, m(PgType::Int8)),
            (6150, arr(m(PgType::Int4))),
            (6151, arr(m(PgType::Numeric))),
            (6152, arr(m(PgType::Timestamp))),
            (6153, arr(m(PgType::TimestampTz))),
            (6155, arr(m(PgType::Date))),
            (6157, arr(m(PgType::Int8))),
        ];
        for (oid, ty) in cases {
            assert_eq!(builtin(oid), Some(ty), "oid {oid}");
        }
    }

    #[test]
    fn unmapped_oids() {
        // regproc, tid, xid, int2vector, regclass, jsonpath, an extension's OID.
        for oid in [0, 22, 24, 27, 28, 2205, 4072, 16391, u32::MAX] {
            assert_eq!(builtin(oid), None, "oid {oid}");
        }
    }

    #[test]
    fn delimiters() {
        assert_eq!(PgType::Box.delimiter(), ';');
        for t in [PgType::Int4, PgType::Point, PgType::Text, PgType::Polygon] {
            assert_eq!(t.delimiter(), ',');
        }
    }

    #[test]
    fn names() {
        assert_eq!(from_type_name("hstore"), Some(PgType::Hstore));
        assert_eq!(from_type_name("public.hstore"), Some(PgType::Hstore));
        assert_eq!(from_type_name("_hstore"), Some(arr(PgType::Hstore)));
        assert_eq!(from_type_name("ext._hstore"), Some(arr(PgType::Hstore)));
        assert_eq!(from_type_name("pg_catalog.\"char\""), Some(PgType::Char));
        assert_eq!(from_type_name("citext"), Some(PgType::Text));
        assert_eq!(from_type_name("_citext"), Some(arr(PgType::Text)));
        assert_eq!(from_type_name("int4"), Some(PgType::Int4));
        assert_eq!(from_type_name("integer[]"), Some(arr(PgType::Int4)));
        assert_eq!(from_type_name("_int4"), Some(arr(PgType::Int4)));
        assert_eq!(
            from_type_name("timestamp(3) with time zone"),
            Some(PgType::TimestampTz)
        );
        assert_eq!(from_type_name("character varying(10)"), Some(PgType::Text));
        assert_eq!(
            from_type_name("numeric(10,2)[]"),
            Some(arr(PgType::Numeric))
        );
        assert_eq!(from_type_name("character(3)"), Some(PgType::Bpchar));
        assert_eq!(from_type_name("\"char\""), Some(PgType::Char));
        assert_eq!(from_type_name("char"), Some(PgType::Char));
        assert_eq!(from_type_name("_bpchar"), Some(arr(PgType::Bpchar)));
        assert_eq!(from_type_name("BIT VARYING(5)"), Some(PgType::VarBit));
        assert_eq!(
            from_type_name("int4multirange"),
            Some(PgType::Multirange(Box::new(PgType::Int4)))
        );
        assert_eq!(from_type_name("my_enum"), None);
        assert_eq!(from_type_name("geometry"), None);
        assert_eq!(from_type_name(""), None);
        assert_eq!(from_type_name("int4[][]"), Some(arr(PgType::Int4)));
        assert_eq!(from_type_name("__int4"), None);
        assert_eq!(from_type_name(&"_".repeat(100_000)), None);
        assert_eq!(from_type_name(&"[]".repeat(100_000)), None);
        assert_eq!(from_type_name("(("), None);
        assert_eq!(from_type_name(")("), None);
    }

    #[test]
    fn display() {
        assert_eq!(arr(PgType::Int4).to_string(), "int4[]");
        assert_eq!(
            PgType::Range(Box::new(PgType::Date)).to_string(),
            "range of date"
        );
    }
}
