//! Arrays in PostgreSQL's text form: `{1,2,NULL}`, `{{1,2},{3,4}}`, `{"a,b","c\"d"}`,
//! `[0:1]={1,2}`, `{}`; elements parsed by their own type.

use super::{parse_inner, Reason, Value};
use crate::model::types::PgType;

/// PostgreSQL's limit on array dimensions (MAXDIM).
const MAX_DIMS: usize = 6;

/// A PostgreSQL array of any number of dimensions (none when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The length of each dimension, outermost first; empty for an empty array.
    pub dims: Vec<usize>,
    /// The lower bound (first index) of each dimension; 1 unless PostgreSQL printed
    /// `[lower:upper]` bounds.
    pub lower_bounds: Vec<i32>,
    /// The elements in row-major order (the last index varies fastest).
    pub elements: Vec<Value>,
}

impl Array {
    /// A one-dimensional array with lower bound 1 (empty when `elements` is).
    pub fn from_elements(elements: Vec<Value>) -> Array {
        if elements.is_empty() {
            return Array {
                dims: Vec::new(),
                lower_bounds: Vec::new(),
                elements,
            };
        }
        Array {
            dims: vec![elements.len()],
            lower_bounds: vec![1],
            elements,
        }
    }
}

/// An array of `elem` (an array of arrays is parsed as one array of more dimensions).
pub(super) fn parse_array(elem: &PgType, text: &str) -> Result<Array, Reason> {
    let mut elem = elem;
    while let PgType::Array(inner) = elem {
        elem = inner;
    }
    let delim = u8::try_from(elem.delimiter()).unwrap_or(b',');
    let b = text.as_bytes();
    let mut i = skip_space(b, 0);

    let declared = if b.get(i) == Some(&b'[') {
        let (bounds, next) = parse_bounds(b, i)?;
        i = skip_space(b, next);
        Some(bounds)
    } else {
        None
    };
    if b.get(i) != Some(&b'{') {
        return Err("expected '{' to start the array".into());
    }

    // dims[d]: the length established for nesting level d (1-based depth - 1).
    let mut dims: Vec<Option<usize>> = Vec::new();
    // counts[d]: items seen so far in the open sub-array at level d.
    let mut counts: Vec<usize> = Vec::new();
    // The depth at which elements (not sub-arrays) appear; all must agree.
    let mut leaf_depth: Option<usize> = None;
    let mut elements = Vec::new();
    // True right after '{' or a delimiter: an item (or, after '{', a '}') comes next.
    let mut want_item = true;
    let mut just_opened = false;

    loop {
        i = skip_space(b, i);
        let Some(&c) = b.get(i) else {
            return Err("unterminated array: missing '}'".into());
        };
        if c == b'{' {
            if !want_item {
                return Err(format!(
                    "expected '{}' or '}}' at byte {i}",
                    char::from(delim)
                ));
            }
            let depth = counts.len() + 1;
            if depth > MAX_DIMS {
                return Err(format!("more than {MAX_DIMS} dimensions"));
            }
            if leaf_depth.is_some_and(|leaf| depth > leaf) {
                return Err(format!("a sub-array where an element belongs at byte {i}"));
            }
            counts.push(0);
            if dims.len() < depth {
                dims.push(None);
            }
            just_opened = true;
            i += 1;
            continue;
        }
        if c == b'}' {
            if want_item && !just_opened {
                return Err(format!("expected an element before '}}' at byte {i}"));
            }
            let depth = counts.len();
            let count = counts.pop().unwrap_or(0);
            if count == 0 && leaf_depth.is_none() && depth > 1 {
                return Err("empty sub-array".into());
            }
            if leaf_depth.is_some_and(|leaf| depth < leaf && count == 0) {
                return Err("empty sub-array".into());
            }
            if let Some(slot) = depth.checked_sub(1).and_then(|d| dims.get_mut(d)) {
                match slot {
                    None => *slot = Some(count),
                    Some(n) if *n == count => {}
                    Some(_) => {
                        return Err("sub-arrays of different lengths (not rectangular)".into())
                    }
                }
            }
            i += 1;
            want_item = false;
            just_opened = false;
            match counts.last_mut() {
                Some(parent) => *parent += 1,
                None => break,
            }
            continue;
        }
        if c == delim {
            if want_item || counts.is_empty() {
                return Err(format!("unexpected '{}' at byte {i}", char::from(delim)));
            }
            want_item = true;
            just_opened = false;
            i += 1;
            continue;
        }
        // An element.
        if !want_item {
            return Err(format!(
                "expected '{}' or '}}' at byte {i}",
                char::from(delim)
            ));
        }
        let depth = counts.len();
        match leaf_depth {
            None if dims.iter().skip(depth).any(Option::is_some) => {
                return Err(format!("an element where a sub-array belongs at byte {i}"));
            }
            None => leaf_depth = Some(depth),
            Some(leaf) if leaf != depth => {
                return Err(format!("an element where a sub-array belongs at byte {i}"));
            }
            Some(_) => {}
        }
        let (token, literal, next) = element_token(b, i, delim)?;
        let value = if !literal && token.eq_ignore_ascii_case("NULL") {
            Value::Null
        } else {
            parse_inner(elem, &token)
                .map_err(|e| format!("element {}: {e} (in {token:?})", elements.len() + 1))?
        };
        elements.push(value);
        if let Some(count) = counts.last_mut() {
            *count += 1;
        }
        i = next;
        want_item = false;
        just_opened = false;
    }

    if skip_space(b, i) != b.len() {
        return Err(format!("unexpected text after the array at byte {i}"));
    }

    if elements.is_empty() {
        if declared.is_some() {
            return Err("dimensions given for an empty array".into());
        }
        return Ok(Array::from_elements(elements));
    }
    let ndims = leaf_depth.unwrap_or(0);
    let dims: Vec<usize> = dims.iter().take(ndims).map(|d| d.unwrap_or(0)).collect();
    let lower_bounds = match declared {
        None => vec![1; dims.len()],
        Some(bounds) => {
            if bounds.len() != dims.len() {
                return Err("the declared dimensions do not match the array".into());
            }
            for ((lower, upper), len) in bounds.iter().zip(&dims) {
                let declared_len = i64::from(*upper) - i64::from(*lower) + 1;
                if usize::try_from(declared_len).ok() != Some(*len) {
                    return Err("the declared dimensions do not match the array".into());
                }
            }
            bounds.iter().map(|(lower, _)| *lower).collect()
        }
    };
    Ok(Array {
        dims,
        lower_bounds,
        elements,
    })
}

fn is_space(c: u8) -> bool {
    // PostgreSQL's scanner_isspace.
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    i
}

/// `[lower:upper][lower:upper]=` (or `[upper]`, lower 1) before the braces.
fn parse_bounds(b: &[u8], mut i: usize) -> Result<(Vec<(i32, i32)>, usize), Reason> {
    let mut bounds = Vec::new();
    while b.get(i) == Some(&b'[') {
        if bounds.len() == MAX_DIMS {
            return Err(format!("more than {MAX_DIMS} dimensions"));
        }
        let (first, next) = bound_number(b, i + 1)?;
        i = next;
        let (lower, upper) = if b.get(i) == Some(&b':') {
            let (second, next) = bound_number(b, i + 1)?;
            i = next;
            (first, second)
        } else {
            (1, first)
        };
        if b.get(i) != Some(&b']') {
            return Err(format!("expected ']' at byte {i}"));
        }
        if upper < lower {
            return Err("an upper bound below its lower bound".into());
        }
        bounds.push((lower, upper));
        i += 1;
    }
    if b.get(i) != Some(&b'=') {
        return Err(format!("expected '=' after the dimensions at byte {i}"));
    }
    Ok((bounds, i + 1))
}

fn bound_number(b: &[u8], mut i: usize) -> Result<(i32, usize), Reason> {
    let start = i;
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let text = std::str::from_utf8(&b[start..i]).map_err(|_| "invalid bound")?;
    let n = text
        .parse::<i32>()
        .map_err(|_| format!("expected a bound at byte {start}"))?;
    Ok((n, i))
}

/// The body of a double-quoted token starting just after its opening quote, with
/// backslash escapes removed (array elements and hstore strings quote alike): the bytes
/// and the index after the closing quote.
pub(super) fn read_quoted(
    b: &[u8],
    mut i: usize,
    unterminated: &str,
) -> Result<(Vec<u8>, usize), Reason> {
    let mut out = Vec::new();
    loop {
        match b.get(i) {
            None => return Err(unterminated.into()),
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => {
                let c = b.get(i + 1).ok_or(unterminated)?;
                out.push(*c);
                i += 2;
            }
            Some(c) => {
                out.push(*c);
                i += 1;
            }
        }
    }
}

/// One element at `i`: (its text with escapes removed, was it quoted or escaped (so
/// never NULL), index after).
fn element_token(b: &[u8], mut i: usize, delim: u8) -> Result<(String, bool, usize), Reason> {
    let mut out = Vec::new();
    let quoted = b.get(i) == Some(&b'"');
    if quoted {
        (out, i) = read_quoted(b, i + 1, "unterminated quoted element")?;
    } else {
        // Up to the delimiter or '}', with trailing (unescaped) blanks dropped.
        let mut keep = 0;
        let mut escaped = false;
        loop {
            match b.get(i) {
                None => break,
                Some(&c) if c == delim || c == b'}' => break,
                Some(b'{') | Some(b'"') => {
                    return Err(format!(
                        "unexpected '{}' in an element at byte {i}",
                        char::from(b[i])
                    ))
                }
                Some(b'\\') => {
                    let c = b.get(i + 1).ok_or("a backslash at the end")?;
                    out.push(*c);
                    keep = out.len();
                    escaped = true;
                    i += 2;
                }
                Some(&c) => {
                    out.push(c);
                    if !is_space(c) {
                        keep = out.len();
                    }
                    i += 1;
                }
            }
        }
        out.truncate(keep);
        if out.is_empty() {
            return Err(format!("an empty unquoted element at byte {i}"));
        }
        let text = String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string())?;
        return Ok((text, escaped, i));
    }
    // Only ASCII bytes were dropped, so the rest is still UTF-8.
    let text = String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string())?;
    Ok((text, true, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(text: &str) -> Result<Array, Reason> {
        parse_array(&PgType::Int4, text)
    }

    fn texts(text: &str) -> Result<Array, Reason> {
        parse_array(&PgType::Text, text)
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn one_dimension_with_null() {
        let a = ints("{1,2,NULL}").unwrap();
        assert_eq!(a.dims, vec![3]);
        assert_eq!(a.lower_bounds, vec![1]);
        assert_eq!(
            a.elements,
            vec![Value::Int4(1), Value::Int4(2), Value::Null]
        );
    }

    #[test]
    fn quoted_elements_and_escapes() {
        // Printed by PostgreSQL 15 for
        // array['a,b','c"d',null,'NULL','',' x ','back\slash','{}','é'].
        let a = texts(r#"{"a,b","c\"d",NULL,"NULL",""," x ","back\\slash","{}",é}"#).unwrap();
        assert_eq!(
            a.elements,
            vec![
                t("a,b"),
                t("c\"d"),
                Value::Null,
                t("NULL"),
                t(""),
                t(" x "),
                t("back\\slash"),
                t("{}"),
                t("é"),
            ]
        );
        assert_eq!(a.dims, vec![9]);
        assert_eq!(texts(r#"{"\\"}"#).unwrap().elements, vec![t("\\")]);
        assert_eq!(texts(r#"{""}"#).unwrap().elements, vec![t("")]);
        assert_eq!(texts("{null}").unwrap().elements, vec![Value::Null]);
        assert_eq!(texts("{N\\ULL}").unwrap().elements, vec![t("NULL")]);
        assert_eq!(texts("{1 2}").unwrap().elements, vec![t("1 2")]);
        // Input syntax: blanks around elements, escapes in unquoted ones.
        assert_eq!(
            texts("{ a b , \"c\" ,d\\,e\\ }").unwrap().elements,
            vec![t("a b"), t("c"), t("d,e ")]
        );
    }

    #[test]
    fn nested_and_empty() {
        let a = ints("{{1,2},{3,4}}").unwrap();
        assert_eq!(a.dims, vec![2, 2]);
        assert_eq!(a.lower_bounds, vec![1, 1]);
        assert_eq!(a.elements, (1..=4).map(Value::Int4).collect::<Vec<_>>());
        let a = ints("{{{1},{2},{3}}}").unwrap();
        assert_eq!(a.dims, vec![1, 3, 1]);
        let a = texts("{{NULL}}").unwrap();
        assert_eq!(a.dims, vec![1, 1]);
        assert_eq!(a.elements, vec![Value::Null]);
        let a = texts(r#"{{"a b",c}}"#).unwrap();
        assert_eq!(a.dims, vec![1, 2]);
        let a = ints("{}").unwrap();
        assert_eq!(a, Array::from_elements(vec![]));
        assert!(a.dims.is_empty() && a.lower_bounds.is_empty());
        let six = "{{{{{{1}}}}}}";
        assert_eq!(ints(six).unwrap().dims, vec![1; 6]);
    }

    #[test]
    fn explicit_bounds() {
        let a = ints("[0:1]={1,2}").unwrap();
        assert_eq!(a.dims, vec![2]);
        assert_eq!(a.lower_bounds, vec![0]);
        let a = ints("[-2:-1][3:4]={{1,2},{3,4}}").unwrap();
        assert_eq!(a.dims, vec![2, 2]);
        assert_eq!(a.lower_bounds, vec![-2, 3]);
        let a = ints("[1:1][2:3]={{1,2}}").unwrap();
        assert_eq!((a.dims, a.lower_bounds), (vec![1, 2], vec![1, 2]));
        let a = texts(r#"{{"a\"b","c\\d"}}"#).unwrap();
        assert_eq!(a.elements, vec![t("a\"b"), t("c\\d")]);
        let a = ints("[2]={1,2}").unwrap();
        assert_eq!(a.lower_bounds, vec![1]);
        for bad in [
            "[0:2]={1,2}",
            "[0:1]={{1,2}}",
            "[0:1][1:1]={1,2}",
            "[1:0]={}",
            "[0:1]{1,2}",
            "[0:1={1,2}",
            "[a:1]={1}",
            "[2147483648:1]={1}",
            "[1:1][1:1][1:1][1:1][1:1][1:1][1:1]={{{{{{{1}}}}}}}",
        ] {
            assert!(ints(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn box_arrays_use_semicolons() {
        let a = parse_array(&PgType::Box, "{(1,1),(0,0);(2,2),(1,1)}").unwrap();
        assert_eq!(
            a.elements,
            vec![
                Value::Geometric("(1,1),(0,0)".into()),
                Value::Geometric("(2,2),(1,1)".into())
            ]
        );
    }

    #[test]
    fn elements_of_other_types() {
        // Printed by PostgreSQL 15.
        let a = parse_array(&PgType::Bpchar, r#"{"a  "}"#).unwrap();
        assert_eq!(a.elements, vec![t("a  ")]);
        let a = parse_array(&PgType::Bytea, r#"{"\\x01"}"#).unwrap();
        assert_eq!(a.elements, vec![Value::Bytea(vec![1])]);
        let a = parse_array(&PgType::Jsonb, r#"{"{\"a\": 1}"}"#).unwrap();
        assert_eq!(a.elements, vec![Value::Json("{\"a\": 1}".into())]);
        let a = parse_array(&PgType::Range(Box::new(PgType::Int4)), r#"{"[1,3)"}"#).unwrap();
        assert_eq!(a.elements, vec![Value::Range("[1,3)".into())]);
        let a = parse_array(&PgType::Composite, r#"{"(1,\"a b\")"}"#).unwrap();
        assert_eq!(a.elements, vec![Value::Composite("(1,\"a b\")".into())]);
        let a = parse_array(&PgType::Interval, r#"{"1 day"}"#).unwrap();
        assert_eq!(
            a.elements,
            vec![Value::Interval {
                months: 0,
                days: 1,
                micros: 0
            }]
        );
        let a = parse_array(&PgType::Bit, "{101}").unwrap();
        assert_eq!(
            a.elements,
            vec![Value::Bits {
                len: 3,
                bytes: vec![0b1010_0000]
            }]
        );
        let a = parse_array(&PgType::Point, r#"{"(1,2)"}"#).unwrap();
        assert_eq!(a.elements, vec![Value::Point { x: 1.0, y: 2.0 }]);
        let a = parse_array(&PgType::Bool, "{t,f,NULL}").unwrap();
        assert_eq!(
            a.elements,
            vec![Value::Bool(true), Value::Bool(false), Value::Null]
        );
        let a = parse_array(&PgType::Hstore, r#"{"\"a\"=>\"1\"","\"b\"=>NULL"}"#).unwrap();
        assert_eq!(
            a.elements,
            vec![
                Value::Hstore(vec![("a".into(), Some("1".into()))]),
                Value::Hstore(vec![("b".into(), None)])
            ]
        );
        // An array type given as the element type is read as more dimensions.
        let a = parse_array(&PgType::Array(Box::new(PgType::Int4)), "{{1},{2}}").unwrap();
        assert_eq!(a.dims, vec![2, 1]);
    }

    #[test]
    fn element_errors_name_the_element() {
        let err = ints("{1,x}").unwrap_err();
        assert!(err.contains("element 2"), "{err}");
    }

    #[test]
    fn malformed_arrays() {
        for bad in [
            "",
            "1,2",
            "{",
            "}",
            "{1,2",
            "{1,,2}",
            "{,1}",
            "{1,}",
            "{1}}",
            "{1}x",
            "{{1},2}",
            "{1,{2}}",
            "{{1,2},{3}}",
            "{{1},{}}",
            "{{}}",
            "{\"a}",
            "{\"a\"b}",
            "{a\"b\"}",
            "{a{b}",
            "{{{{{{{1}}}}}}}",
            "{1}{2}",
            "{a\\",
        ] {
            assert!(texts(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "{".repeat(100_000), "}".repeat(100_000));
        assert!(texts(&deep).is_err());
    }
}
