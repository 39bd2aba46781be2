#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): a few valid
messages of each kind, as PostgreSQL sends them. Rerun after a format change:
    python3 fuzz/seed_corpus.py
"""
import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def u8(v): return struct.pack(">B", v)
def i16(v): return struct.pack(">h", v)
def u32(v): return struct.pack(">I", v)
def i32(v): return struct.pack(">i", v)
def u64(v): return struct.pack(">Q", v)
def i64(v): return struct.pack(">q", v)
def s(v): return v.encode() + b"\0"


def tuple_data(cols):
    out = i16(len(cols))
    for c in cols:
        if c is None:
            out += b"n"
        elif c == "TOAST":
            out += b"u"
        elif isinstance(c, bytes):
            out += b"b" + u32(len(c)) + c
        else:
            out += b"t" + u32(len(c.encode())) + c.encode()
    return out


# (name, type oid, typmod, key): the 10-column row the benchmark uses too.
COLUMNS = [
    ("id", 20, -1, True), ("name", 25, -1, False), ("email", 1043, 259, False),
    ("amount", 1700, (12 << 16 | 2) + 4, False), ("created_at", 1184, -1, False),
    ("active", 16, -1, False), ("attrs", 3802, -1, False), ("qty", 23, -1, False),
    ("score", 701, -1, False), ("ref", 2950, -1, False),
]
ROW = ["1234567", "Ada Lovelace", "ada@example.com", "1234.56",
       "2024-03-01 12:34:56.789+00", "t", '{"tier": "gold", "tags": ["a", "b"]}',
       "42", "0.125", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]
LSN, END, TIME, XID, REL = 0x16B3748, 0x16B3790, 762_000_000_000_000, 750, 16384


def relation(xid=b""):
    out = b"R" + xid + u32(REL) + s("public") + s("orders") + b"d" + i16(len(COLUMNS))
    for name, oid, mod, key in COLUMNS:
        out += u8(1 if key else 0) + s(name) + u32(oid) + i32(mod)
    return out


def prepare_info(tag, flags=True):
    return (tag + (u8(0) if flags else b"") + u64(LSN) + u64(END) + i64(TIME)
            + u32(XID) + s("gid-1"))


stream = u32(XID)
PGOUTPUT = {
    "begin": b"B" + u64(LSN) + i64(TIME) + u32(XID),
    "commit": b"C" + u8(0) + u64(LSN) + u64(END) + i64(TIME),
    "origin": b"O" + u64(LSN) + s("node_a"),
    "relation": relation(),
    "type": b"Y" + u32(16500) + s("public") + s("mood"),
    "insert": b"I" + u32(REL) + b"N" + tuple_data(ROW),
    "insert_stream": b"I" + stream + u32(REL) + b"N" + tuple_data(ROW),
    "insert_null_toast": b"I" + u32(REL) + b"N"
    + tuple_data(["1", None, "TOAST", None, None, "f", "TOAST", None, "NaN", None]),
    "insert_binary": b"I" + u32(REL) + b"N" + tuple_data([b"\0\0\0\0\0\0\0\x01", b"x"]),
    "update_key": b"U" + u32(REL) + b"K" + tuple_data(["7"] + [None] * 9)
    + b"N" + tuple_data(ROW),
    "update_full": b"U" + u32(REL) + b"O" + tuple_data(ROW) + b"N" + tuple_data(ROW),
    "delete_key": b"D" + u32(REL) + b"K" + tuple_data(["7"] + [None] * 9),
    "delete_full_stream": b"D" + stream + u32(REL) + b"O" + tuple_data(ROW),
    "truncate": b"T" + u32(2) + u8(3) + u32(REL) + u32(REL + 1),
    "message": b"M" + u8(1) + u64(LSN) + s("walcast") + u32(5) + b"hello",
    "message_stream": b"M" + stream + u8(0) + u64(LSN) + s("p") + u32(0),
    "stream_start": b"S" + u32(XID) + u8(1),
    "stream_stop": b"E",
    "stream_commit": b"c" + u32(XID) + u8(0) + u64(LSN) + u64(END) + i64(TIME),
    "stream_abort": b"A" + u32(XID) + u32(XID + 1),
    "stream_abort_parallel": b"A" + u32(XID) + u32(XID) + u64(LSN) + i64(TIME),
    "begin_prepare": prepare_info(b"b", flags=False),
    "prepare": prepare_info(b"P"),
    "stream_prepare": prepare_info(b"p"),
    "commit_prepared": prepare_info(b"K"),
    "rollback_prepared": b"r" + u8(0) + u64(LSN) + u64(END) + i64(TIME) + i64(TIME + 1)
    + u32(XID) + s("gid-1"),
}


def xlogdata(payload):
    return b"w" + u64(LSN) + u64(END) + i64(TIME) + payload


WAL_MESSAGE = {
    "xlogdata_begin": xlogdata(PGOUTPUT["begin"]),
    "xlogdata_insert": xlogdata(PGOUTPUT["insert"]),
    "keepalive": b"k" + u64(END) + i64(TIME) + u8(0),
    "keepalive_reply": b"k" + u64(END) + i64(TIME) + u8(1),
}

# The values target picks its type as TYPES[first byte % len]: every OID `builtin`
# knows in ascending order, then hstore, hstore[], enum, enum[], composite, unknown.
types_rs = (ROOT / "src/source/types.rs").read_text()
oids = set()
for table in ("SCALARS", "RANGES"):
    body = types_rs.split(f"const {table}")[1].split("];")[0]
    for row in re.findall(r"\(([\d,\s]+),\s*PgType", body):
        oids.update(int(x) for x in row.split(",") if x.strip())
oids.add(705)  # unknown
OIDS = sorted(oids)


def value(oid, text):
    index = OIDS.index(oid) if oid != "hstore" else len(OIDS)
    return u8(index) + text.encode()


VALUES = {
    "int8": value(20, "-9223372036854775808"),
    "int4_array": value(1007, "{{1,NULL},{3,4}}"),
    "text_array": value(1009, '{"a,b",NULL,"c\\"d",plain}'),
    "numeric": value(1700, "-12345678901234567890.0123456789"),
    "numeric_nan": value(1700, "NaN"),
    "float8_inf": value(701, "-Infinity"),
    "money": value(790, "-$1,234.56"),
    "timestamptz": value(1184, "2024-03-01 12:34:56.789+05:30"),
    "date_bc": value(1082, "0044-03-15 BC"),
    "timetz": value(1266, "23:59:59.999999-08"),
    "interval": value(1186, "1 year 2 mons -3 days 04:05:06.7"),
    "uuid": value(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "bytea": value(17, "\\xdeadbeef"),
    "inet": value(869, "2001:db8::1/64"),
    "macaddr": value(829, "08:00:2b:01:02:03"),
    "varbit": value(1562, "10101"),
    "pg_lsn": value(3220, "16/B374D848"),
    "hstore": value("hstore", '"a"=>"1", "b"=>NULL'),
}

for target, seeds in (("pgoutput", PGOUTPUT), ("wal_message", WAL_MESSAGE),
                      ("values", VALUES)):
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds in {folder.relative_to(ROOT)}")
