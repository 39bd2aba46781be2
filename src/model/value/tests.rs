//! `parse_text` for every type through the public entry point, error messages, and a
//! deterministic fuzz check that no input panics for any type.

use super::*;
use crate::model::types::{builtin, PgType};
use datetime::civil_from_days;

fn parse(ty: PgType, text: &str) -> Value {
    match parse_text(&ty, text) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn arr(t: PgType) -> PgType {
    PgType::Array(Box::new(t))
}

#[test]
fn every_type_through_parse_text() {
    // Texts printed by PostgreSQL 15 (`SELECT '…'::type`).
    assert_eq!(parse(PgType::Bool, "t"), Value::Bool(true));
    assert_eq!(parse(PgType::Int2, "-32768"), Value::Int2(-32768));
    assert_eq!(parse(PgType::Int4, "2147483647"), Value::Int4(i32::MAX));
    assert_eq!(
        parse(PgType::Int8, "-9223372036854775808"),
        Value::Int8(i64::MIN)
    );
    assert_eq!(parse(PgType::Oid, "4294967295"), Value::Oid(u32::MAX));
    assert_eq!(parse(PgType::Float4, "0.1"), Value::Float4(0.1));
    assert_eq!(
        parse(PgType::Float8, "-Infinity"),
        Value::Float8(f64::NEG_INFINITY)
    );
    assert!(matches!(parse(PgType::Float8, "NaN"), Value::Float8(x) if x.is_nan()));
    assert!(matches!(parse(PgType::Float4, "NaN"), Value::Float4(x) if x.is_nan()));
    assert_eq!(parse(PgType::Numeric, "NaN"), Value::Numeric(Numeric::NaN));
    assert_eq!(
        parse(PgType::Numeric, "-Infinity"),
        Value::Numeric(Numeric::NegInfinity)
    );
    assert_eq!(
        parse(PgType::Numeric, "-0.00012"),
        Value::Numeric(Numeric::Finite(Decimal::new(true, "12", 5).unwrap()))
    );
    assert_eq!(
        parse(PgType::Money, "-$1,234.56"),
        Value::Money(Decimal::new(true, "123456", 2).unwrap())
    );
    assert_eq!(parse(PgType::Text, "héllo"), Value::Text("héllo".into()));
    assert_eq!(parse(PgType::Bpchar, "ab   "), Value::Text("ab   ".into()));
    assert_eq!(parse(PgType::Char, "\\303"), Value::Text("\\303".into()));
    assert_eq!(parse(PgType::Enum, "happy"), Value::Enum("happy".into()));
    assert_eq!(
        parse(PgType::Json, "{\"a\":1}"),
        Value::Json("{\"a\":1}".into())
    );
    assert_eq!(
        parse(PgType::Jsonb, "{\"a\": 1}"),
        Value::Json("{\"a\": 1}".into())
    );
    assert_eq!(parse(PgType::Xml, "<a/>"), Value::Xml("<a/>".into()));
    assert_eq!(
        parse(PgType::Uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
        Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
    );
    assert_eq!(
        parse(PgType::Bytea, "\\x0a0bff"),
        Value::Bytea(vec![10, 11, 255])
    );
    assert_eq!(
        parse(PgType::Date, "0044-03-15 BC"),
        Value::Date(DateValue::Finite(-735_160))
    );
    assert_eq!(
        parse(PgType::Date, "-infinity"),
        Value::Date(DateValue::NegInfinity)
    );
    assert_eq!(parse(PgType::Time, "24:00:00"), Value::Time(86_400_000_000));
    assert_eq!(
        parse(PgType::TimeTz, "10:00:00.5+05:30"),
        Value::TimeTz {
            micros: 36_000_500_000,
            offset_seconds: 19_800
        }
    );
    assert_eq!(
        parse(PgType::Timestamp, "2026-01-16 10:00:00"),
        Value::Timestamp(TimestampValue::Finite(1_768_557_600_000_000))
    );
    assert_eq!(
        parse(PgType::TimestampTz, "2026-01-16 15:30:00+05:30"),
        Value::TimestampTz(TimestampValue::Finite(1_768_557_600_000_000))
    );
    assert_eq!(
        parse(PgType::TimestampTz, "infinity"),
        Value::TimestampTz(TimestampValue::PosInfinity)
    );
    assert_eq!(
        parse(PgType::Interval, "-1 days +02:03:00"),
        Value::Interval {
            months: 0,
            days: -1,
            micros: 7_380_000_000
        }
    );
    assert_eq!(
        parse(PgType::Inet, "::1/128"),
        Value::Inet("::1/128".into())
    );
    assert_eq!(
        parse(PgType::Cidr, "10.1.0.0/16"),
        Value::Cidr("10.1.0.0/16".into())
    );
    assert_eq!(
        parse(PgType::MacAddr, "08:00:2b:01:02:03"),
        Value::MacAddr("08:00:2b:01:02:03".into())
    );
    assert_eq!(
        parse(PgType::MacAddr8, "08:00:2b:ff:fe:01:02:03"),
        Value::MacAddr8("08:00:2b:ff:fe:01:02:03".into())
    );
    assert_eq!(
        parse(PgType::Bit, "101"),
        Value::Bits {
            len: 3,
            bytes: vec![0xa0]
        }
    );
    assert_eq!(
        parse(PgType::VarBit, ""),
        Value::Bits {
            len: 0,
            bytes: vec![]
        }
    );
    assert_eq!(
        parse(PgType::PgLsn, "16/B374D848"),
        Value::PgLsn(0x16_B374_D848)
    );
    assert_eq!(
        parse(PgType::Point, "(1.5,2)"),
        Value::Point { x: 1.5, y: 2.0 }
    );
    for (ty, text) in [
        (PgType::Line, "{1,2,3}"),
        (PgType::Lseg, "[(1,2),(3,4)]"),
        (PgType::Box, "(3,4),(1,2)"),
        (PgType::Path, "((1,2),(3,4))"),
        (PgType::Polygon, "((1,2),(3,4),(5,6))"),
        (PgType::Circle, "<(1,2),3>"),
    ] {
        assert_eq!(parse(ty, text), Value::Geometric(text.into()));
    }
    assert_eq!(
        parse(PgType::TsVector, "'a' 'cat' 'fat'"),
        Value::TextSearch("'a' 'cat' 'fat'".into())
    );
    assert_eq!(
        parse(PgType::TsQuery, "'fat' & ( 'rat' | 'cat' )"),
        Value::TextSearch("'fat' & ( 'rat' | 'cat' )".into())
    );
    assert_eq!(
        parse(PgType::Hstore, "\"a\"=>\"1\", \"b\"=>NULL"),
        Value::Hstore(vec![("a".into(), Some("1".into())), ("b".into(), None)])
    );
    let int4range = PgType::Range(Box::new(PgType::Int4));
    assert_eq!(
        parse(int4range.clone(), "[1,5)"),
        Value::Range("[1,5)".into())
    );
    assert_eq!(parse(int4range, "empty"), Value::Range("empty".into()));
    assert_eq!(
        parse(PgType::Multirange(Box::new(PgType::Int4)), "{[1,3),[5,7)}"),
        Value::Multirange("{[1,3),[5,7)}".into())
    );
    assert_eq!(
        parse(arr(PgType::Int4), "{1,NULL}"),
        Value::Array(Array::from_elements(vec![Value::Int4(1), Value::Null]))
    );
    assert_eq!(
        parse(PgType::Composite, "(1,\"a b\")"),
        Value::Composite("(1,\"a b\")".into())
    );
    assert_eq!(
        parse(PgType::Unknown, "(0,1)"),
        Value::Unknown("(0,1)".into())
    );
}

#[test]
fn arrays_of_builtin_array_oids() {
    // _timestamptz (1185), as PostgreSQL 15 prints array['infinity', '2020-01-01'].
    let ty = builtin(1185).unwrap();
    let v = parse(ty, "{infinity,\"2020-01-01 00:00:00+00\"}");
    let Value::Array(a) = v else { panic!("{v:?}") };
    assert_eq!(
        a.elements,
        vec![
            Value::TimestampTz(TimestampValue::PosInfinity),
            Value::TimestampTz(TimestampValue::Finite(1_577_836_800_000_000))
        ]
    );
    // _numeric (1231).
    let v = parse(builtin(1231).unwrap(), "{1.5,NaN}");
    let Value::Array(a) = v else { panic!("{v:?}") };
    assert_eq!(
        a.elements,
        vec![
            Value::Numeric(Numeric::Finite(Decimal::new(false, "15", 1).unwrap())),
            Value::Numeric(Numeric::NaN)
        ]
    );
    // _box (1020) uses ';'.
    let v = parse(builtin(1020).unwrap(), "{(1,1),(0,0);(2,2),(1,1)}");
    let Value::Array(a) = v else { panic!("{v:?}") };
    assert_eq!(a.elements.len(), 2);
}

#[test]
fn errors_name_type_and_text() {
    let err = parse_text(&PgType::Int4, "12x").unwrap_err();
    assert_eq!(err.ty, "int4");
    assert_eq!(err.text, "12x");
    assert!(
        err.to_string()
            .starts_with("cannot parse int4 value \"12x\": "),
        "{err}"
    );

    let err = parse_text(&arr(PgType::Date), "{2026-13-01}").unwrap_err();
    assert_eq!(err.ty, "date[]");
    assert!(err.reason.contains("element 1"), "{err}");

    let long = "é".repeat(1000);
    let err = parse_text(&PgType::Int8, &long).unwrap_err();
    assert!(err.text.chars().count() < 90, "{}", err.text);
    assert!(err.text.ends_with("… (2000 bytes)"), "{}", err.text);

    let err = parse_text(&PgType::Timestamp, "01/16/2026 10:00:00").unwrap_err();
    assert!(err.to_string().contains("DateStyle=ISO"), "{err}");
    let err = parse_text(&PgType::Interval, "P1D").unwrap_err();
    assert!(err.to_string().contains("IntervalStyle=postgres"), "{err}");
}

#[test]
fn null_and_toast_are_distinct() {
    assert!(Value::Null.is_null());
    assert!(!Value::UnchangedToast.is_null());
    assert_ne!(Value::Null, Value::UnchangedToast);
}

/// Every parser kind, and arrays, ranges and multiranges of several.
fn all_types() -> Vec<PgType> {
    let scalars = vec![
        PgType::Bool,
        PgType::Int2,
        PgType::Int4,
        PgType::Int8,
        PgType::Oid,
        PgType::Float4,
        PgType::Float8,
        PgType::Numeric,
        PgType::Money,
        PgType::Text,
        PgType::Bpchar,
        PgType::Char,
        PgType::Bytea,
        PgType::Date,
        PgType::Time,
        PgType::TimeTz,
        PgType::Timestamp,
        PgType::TimestampTz,
        PgType::Interval,
        PgType::Uuid,
        PgType::Json,
        PgType::Jsonb,
        PgType::Xml,
        PgType::Inet,
        PgType::Cidr,
        PgType::MacAddr,
        PgType::MacAddr8,
        PgType::Bit,
        PgType::VarBit,
        PgType::PgLsn,
        PgType::Point,
        PgType::Line,
        PgType::Lseg,
        PgType::Box,
        PgType::Path,
        PgType::Polygon,
        PgType::Circle,
        PgType::TsVector,
        PgType::TsQuery,
        PgType::Hstore,
        PgType::Enum,
        PgType::Composite,
        PgType::Unknown,
        PgType::Range(Box::new(PgType::Int4)),
        PgType::Multirange(Box::new(PgType::Date)),
    ];
    let mut all = scalars.clone();
    all.extend(scalars.into_iter().map(arr));
    all.push(arr(arr(PgType::Int4)));
    all
}

/// Valid texts (as PostgreSQL prints them) to mutate.
const SEEDS: &[&str] = &[
    "t",
    "-32768",
    "1.5e-07",
    "-Infinity",
    "NaN",
    "12345678901234567890123456789012345678901234567890.123",
    "-0.00012",
    "1e5",
    "-$92,233,720,368,547,758.08",
    "($5.00)",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "\\x0a0bff",
    "\\012\\\\'\\377A",
    "0044-03-15 BC",
    "5874897-12-31",
    "24:00:00",
    "10:00:00.5+05:30",
    "10:00:00-03:00:15",
    "0044-03-15 10:19:32+00:19:32 BC",
    "2026-01-16 10:00:00.123456",
    "1 year 2 mons 3 days 04:05:06.789",
    "-1 days +02:03:00",
    "-2562047788:00:54.775808",
    "192.168.0.1/24",
    "2001:db8::/64",
    "08:00:2b:01:02:03:04:05",
    "1010101011",
    "16/B374D848",
    "(1e+300,-Infinity)",
    "<(1,2),3>",
    "\"a\"=>\"1\", \"b\"=>NULL, \"c d\"=>\"x\\\"y\", \"e\\\\f\"=>\"\"",
    "{1,2,NULL}",
    "{\"a,b\",\"c\\\"d\",NULL,\"NULL\",\"\",é}",
    "[-2:-1][3:4]={{1,2},{3,4}}",
    "{(1,1),(0,0);(2,2),(1,1)}",
    "{{\"a b\",c}}",
    "{infinity,\"2020-01-01 00:00:00+00\"}",
    "{\"\\\"a\\\"=>\\\"1\\\"\",\"\\\"b\\\"=>NULL\"}",
    "[1,5)",
];

/// Characters that matter to some parser, plus multi-byte ones to catch slicing.
const ALPHABET: &[char] = &[
    '0', '1', '2', '5', '9', '-', '+', '.', ',', ':', ';', '/', ' ', '\t', '{', '}', '[', ']', '(',
    ')', '<', '>', '=', '"', '\\', 'x', 'e', 'E', 'N', 'U', 'L', 'n', 'a', 'f', 't', 'B', 'C', 'T',
    '$', 'é', '€', '😀', '\u{0}', 'I', 'y',
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn char(&mut self) -> char {
        ALPHABET[self.below(ALPHABET.len())]
    }
}

/// Random edits of a valid text: delete, insert, replace, duplicate or truncate.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(3) {
        let len = chars.len();
        match rng.below(5) {
            0 if len > 0 => {
                chars.remove(rng.below(len));
            }
            1 => {
                let c = rng.char();
                chars.insert(rng.below(len + 1), c);
            }
            2 if len > 0 => {
                let c = rng.char();
                let at = rng.below(len);
                chars[at] = c;
            }
            3 if len > 0 => {
                let (from, to) = (rng.below(len), rng.below(len));
                let (from, to) = (from.min(to), from.max(to));
                let piece: Vec<char> = chars[from..=to].to_vec();
                let at = rng.below(len + 1);
                chars.splice(at..at, piece);
            }
            _ => chars.truncate(rng.below(len + 1)),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn no_input_panics_for_any_type() {
    let types = all_types();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut inputs: Vec<String> = Vec::new();
    // Every prefix of every seed (cuts at every character boundary).
    for seed in SEEDS {
        for (i, _) in seed.char_indices() {
            inputs.push(seed[..i].to_string());
            inputs.push(seed[i..].to_string());
        }
    }
    for _ in 0..3000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        inputs.push(mutate(&mut rng, seed));
    }
    for _ in 0..2000 {
        let len = rng.below(24);
        inputs.push((0..len).map(|_| rng.char()).collect());
    }
    // Extremes: deep nesting, huge numbers and exponents, long runs.
    inputs.push("{".repeat(10_000));
    inputs.push(format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000)));
    inputs.push("[1:1]".repeat(1000) + "={1}");
    inputs.push("9".repeat(10_000));
    inputs.push(format!("1e{}", "9".repeat(50)));
    inputs.push("1e-1000".into());
    inputs.push(format!("{} years", "9".repeat(40)));
    inputs.push(format!("{}:00:00", "9".repeat(40)));
    inputs.push(format!("{}-01-01", "9".repeat(40)));
    inputs.push("\\".repeat(1001));
    inputs.push("\"".repeat(1001));
    for ty in &types {
        for input in &inputs {
            // Ok or Err, never a panic; and errors render.
            if let Err(e) = parse_text(ty, input) {
                let _ = e.to_string();
            }
        }
    }
}

#[test]
fn parsed_values_survive_reparsing_their_text() {
    // Texts PostgreSQL prints parse and the array elements of the same texts (quoted
    // as PostgreSQL quotes them) give the same values.
    let cases = [
        (PgType::Numeric, "-0.00012"),
        (PgType::Interval, "1 year 2 mons 3 days 04:05:06.789"),
        (PgType::TimestampTz, "0044-03-15 10:19:32+00:19:32 BC"),
        (PgType::Date, "0044-03-15 BC"),
        (PgType::Bytea, "\\x0a0bff"),
        (PgType::Hstore, "\"a\"=>\"1\", \"b\"=>NULL"),
    ];
    for (ty, text) in cases {
        let single = parse(ty.clone(), text);
        let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
        let array = parse(arr(ty), &format!("{{\"{quoted}\",NULL}}"));
        assert_eq!(
            array,
            Value::Array(Array::from_elements(vec![single, Value::Null])),
            "{text}"
        );
    }
}

/// A date the way PostgreSQL's ISO DateStyle prints it.
fn iso_date(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    if year <= 0 {
        format!("{:04}-{month:02}-{day:02} BC", 1 - year)
    } else {
        format!("{year:04}-{month:02}-{day:02}")
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>(), pick in any::<usize>()) {
            let types = all_types();
            let _ = parse_text(&types[pick % types.len()], &text);
        }

        #[test]
        fn structured_strings_never_panic(
            text in "[-+0-9.,:;/ {}\\[\\]()<>=\"\\\\xeEaNULnf$BCé€😀]{0,40}"
        ) {
            for ty in all_types() {
                let _ = parse_text(&ty, &text);
            }
        }

        #[test]
        fn dates_round_trip(days in -2_440_588i64..=2_145_042_905) {
            let text = iso_date(days);
            prop_assert_eq!(
                parse_text(&PgType::Date, &text),
                Ok(Value::Date(DateValue::Finite(days as i32))),
                "{}", text
            );
        }

        #[test]
        fn timestamps_round_trip(
            days in -2_440_588i64..=106_751_990,
            micros_of_day in 0i64..86_400_000_000,
            offset in -57_599i32..=57_599,
        ) {
            let (h, m, s, us) = (
                micros_of_day / 3_600_000_000,
                micros_of_day / 60_000_000 % 60,
                micros_of_day / 1_000_000 % 60,
                micros_of_day % 1_000_000,
            );
            let date = iso_date(days);
            let (date, bc) = match date.strip_suffix(" BC") {
                Some(d) => (d.to_string(), " BC"),
                None => (date, ""),
            };
            let fraction = if us == 0 {
                String::new()
            } else {
                format!(".{us:06}").trim_end_matches('0').to_string()
            };
            let local = days * 86_400_000_000 + micros_of_day;
            let text = format!("{date} {h:02}:{m:02}:{s:02}{fraction}{bc}");
            prop_assert_eq!(
                parse_text(&PgType::Timestamp, &text),
                Ok(Value::Timestamp(TimestampValue::Finite(local))),
                "{}", text
            );
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            let zone = match (abs / 60 % 60, abs % 60) {
                (0, 0) => format!("{sign}{:02}", abs / 3600),
                (mm, 0) => format!("{sign}{:02}:{mm:02}", abs / 3600),
                (mm, ss) => format!("{sign}{:02}:{mm:02}:{ss:02}", abs / 3600),
            };
            let text = format!("{date} {h:02}:{m:02}:{s:02}{fraction}{zone}{bc}");
            prop_assert_eq!(
                parse_text(&PgType::TimestampTz, &text),
                Ok(Value::TimestampTz(TimestampValue::Finite(local - i64::from(offset) * 1_000_000))),
                "{}", text
            );
        }

        #[test]
        fn decimals_round_trip_and_match_i128(v in any::<i128>(), scale in 0u32..50) {
            let d = Decimal::new(v < 0, &v.unsigned_abs().to_string(), scale).unwrap();
            let text = d.to_string();
            prop_assert_eq!(
                parse_text(&PgType::Numeric, &text),
                Ok(Value::Numeric(Numeric::Finite(d.clone()))),
                "{}", text
            );
            let bytes = d.unscaled_be_bytes();
            prop_assert!(!bytes.is_empty() && bytes.len() <= 16);
            // Sign-extend back to i128.
            let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
            let mut wide = [fill; 16];
            wide[16 - bytes.len()..].copy_from_slice(&bytes);
            prop_assert_eq!(i128::from_be_bytes(wide), v);
            // Minimal: dropping the first byte would change the value.
            if bytes.len() > 1 {
                let redundant = (bytes[0] == 0 && bytes[1] & 0x80 == 0)
                    || (bytes[0] == 0xff && bytes[1] & 0x80 != 0);
                prop_assert!(!redundant, "{:?}", bytes);
            }
        }

        #[test]
        fn text_arrays_round_trip(items in proptest::collection::vec(
            proptest::option::of("[a-zA-Z0-9 ,\"\\\\{}é€]{0,8}"), 0..8)
        ) {
            // Quote every element the way PostgreSQL's array_out does when it must.
            let mut text = String::from("{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                match item {
                    None => text.push_str("NULL"),
                    Some(s) => {
                        text.push('"');
                        for c in s.chars() {
                            if c == '"' || c == '\\' {
                                text.push('\\');
                            }
                            text.push(c);
                        }
                        text.push('"');
                    }
                }
            }
            text.push('}');
            let want: Vec<Value> = items
                .iter()
                .map(|i| i.as_ref().map_or(Value::Null, |s| Value::Text(s.clone())))
                .collect();
            prop_assert_eq!(
                parse_text(&arr(PgType::Text), &text),
                Ok(Value::Array(Array::from_elements(want))),
                "{}", text
            );
        }
    }
}
