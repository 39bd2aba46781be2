//! Fuzzes the text-form value parser: the first byte picks a type (every built-in
//! type, its array, ranges, plus hstore, enum, composite and unknown), the rest is the
//! text (lossy UTF-8, as the reader only passes valid UTF-8). Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use walcast::model::types::{builtin, from_type_name, PgType};
use walcast::model::value::parse_text;

/// Every type `builtin` knows (scanned once over the OID range of built-in types),
/// then the ones resolved by name or from the catalog.
static TYPES: LazyLock<Vec<PgType>> = LazyLock::new(|| {
    let mut types: Vec<PgType> = (0..10_000).filter_map(builtin).collect();
    types.extend(from_type_name("hstore"));
    types.extend(from_type_name("hstore[]"));
    types.extend([
        PgType::Enum,
        PgType::Array(Box::new(PgType::Enum)),
        PgType::Composite,
        PgType::Unknown,
    ]);
    types
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let ty = &TYPES[usize::from(pick) % TYPES.len()];
    let text = String::from_utf8_lossy(text);
    let _ = parse_text(ty, &text);
});
