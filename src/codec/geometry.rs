//! Geometric types as Debezium maps them: PostgreSQL's `point`
//! (`io.debezium.data.geometry.Point`) and PostGIS `geometry` / `geography`
//! (`io.debezium.data.geometry.Geometry` / `Geography`): schemas and encoding.

use super::connect::{field, ConnectSchema};
use super::encode::{put_bytes, put_f64, put_int, put_long};

/// PostGIS `geometry` (`geography: false`; optional whatever the column, as Debezium's
/// builder makes it) and `geography`: `{wkb: bytes, srid: optional int32}`, version 1.
pub(super) fn geometry_schema(geography: bool) -> ConnectSchema {
    let (name, doc) = if geography {
        ("io.debezium.data.geometry.Geography", "Geography")
    } else {
        ("io.debezium.data.geometry.Geometry", "Geometry")
    };
    let schema = ConnectSchema::record(
        name,
        vec![
            field("wkb", ConnectSchema::bytes()),
            field("srid", ConnectSchema::int32().optional()),
        ],
    )
    .version(1)
    .doc(doc);
    if geography {
        schema
    } else {
        schema.optional()
    }
}

pub(super) fn point_schema() -> ConnectSchema {
    ConnectSchema::record(
        "io.debezium.data.geometry.Point",
        vec![
            field("x", ConnectSchema::float64()),
            field("y", ConnectSchema::float64()),
            field("wkb", ConnectSchema::bytes().optional()),
            field("srid", ConnectSchema::int32().optional()),
        ],
    )
    .version(1)
    .doc("Geometry (POINT)")
}

/// `GEOMETRYCOLLECTION EMPTY` as EWKB hex: Debezium's fallback for a value it cannot
/// read.
const EMPTY_GEOMETRY_COLLECTION: &str = "010700000000000000";

/// A PostGIS value (pgoutput sends the hex EWKB) as Debezium's Geometry/Geography:
/// `wkb` = the EWKB bytes as received (SRID and flags kept), `srid` = the SRID when the
/// type word's SRID flag (0x20000000) is set. Unreadable EWKB (shorter than 9 bytes,
/// not hex) becomes `GEOMETRYCOLLECTION EMPTY`, as Debezium falls back.
pub(super) fn put_geometry(out: &mut Vec<u8>, hex: &str) {
    let decoded: Option<Vec<u8>> = (hex.len() % 2 == 0)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
        .filter(|b: &Vec<u8>| b.len() >= 9);
    let Some(wkb) = decoded else {
        if hex != EMPTY_GEOMETRY_COLLECTION {
            return put_geometry(out, EMPTY_GEOMETRY_COLLECTION);
        }
        put_bytes(out, &[1, 7, 0, 0, 0, 0, 0, 0, 0]);
        put_long(out, 0);
        return;
    };
    let little = wkb[0] != 0;
    let word = |b: &[u8]| {
        let arr = [b[0], b[1], b[2], b[3]];
        if little {
            u32::from_le_bytes(arr)
        } else {
            u32::from_be_bytes(arr)
        }
    };
    let srid = (word(&wkb[1..5]) & 0x2000_0000 != 0).then(|| word(&wkb[5..9]) as i32);
    put_bytes(out, &wkb);
    match srid {
        Some(srid) => {
            put_long(out, 1);
            put_int(out, srid);
        }
        None => put_long(out, 0),
    }
}

pub(super) fn put_point(out: &mut Vec<u8>, x: f64, y: f64) {
    put_f64(out, x);
    put_f64(out, y);
    // wkb: ["null","bytes"] → branch 1, a 2D WKB point (little-endian).
    put_long(out, 1);
    put_long(out, 21);
    out.push(1);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&x.to_le_bytes());
    out.extend_from_slice(&y.to_le_bytes());
    // srid: null
    put_long(out, 0);
}

/// `GEOMETRYCOLLECTION EMPTY`: what a NOT NULL geometry with no value is written as.
pub(super) fn put_empty_geometry(out: &mut Vec<u8>) {
    put_geometry(out, EMPTY_GEOMETRY_COLLECTION);
}
