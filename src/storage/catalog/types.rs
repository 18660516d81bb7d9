//! The PostgreSQL types the catalog knows: their OIDs, names and shapes (`pg_type`'s rows),
//! the type a SQLite column's declared type stands for, and `format_type`'s spelling.

/// One row of `pg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinType {
    pub oid: u32,
    /// `pg_type.typname`.
    pub name: &'static str,
    /// How `format_type` spells it (SQL standard names where PostgreSQL uses them).
    pub sql_name: &'static str,
    /// `typlen`: bytes, or -1 for variable length.
    pub len: i16,
    /// `typcategory`.
    pub category: char,
    /// The array type's OID (0 for an array type itself); for an array, its element's OID
    /// is in `element`.
    pub array: u32,
    pub element: u32,
    /// Collatable (text-like): `typcollation` is 100, the default collation.
    pub collatable: bool,
}

const fn scalar(
    oid: u32,
    name: &'static str,
    sql_name: &'static str,
    len: i16,
    category: char,
    array: u32,
    collatable: bool,
) -> BuiltinType {
    BuiltinType {
        oid,
        name,
        sql_name,
        len,
        category,
        array,
        element: 0,
        collatable,
    }
}

const fn array(oid: u32, name: &'static str, sql_name: &'static str, element: u32) -> BuiltinType {
    BuiltinType {
        oid,
        name,
        sql_name,
        len: -1,
        category: 'A',
        array: 0,
        element,
        collatable: false,
    }
}

pub const BOOL: u32 = 16;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const FLOAT8: u32 = 701;
pub const VARCHAR: u32 = 1043;
pub const BPCHAR: u32 = 1042;
pub const NUMERIC: u32 = 1700;

/// Every type in `pg_type`.
pub const TYPES: &[BuiltinType] = &[
    scalar(BOOL, "bool", "boolean", 1, 'B', 1000, false),
    scalar(17, "bytea", "bytea", -1, 'U', 1001, false),
    scalar(18, "char", "\"char\"", 1, 'Z', 1002, false),
    scalar(NAME, "name", "name", 64, 'S', 1003, true),
    scalar(INT8, "int8", "bigint", 8, 'N', 1016, false),
    scalar(INT2, "int2", "smallint", 2, 'N', 1005, false),
    scalar(22, "int2vector", "int2vector", -1, 'A', 1006, false),
    scalar(INT4, "int4", "integer", 4, 'N', 1007, false),
    scalar(24, "regproc", "regproc", 4, 'N', 1008, false),
    scalar(TEXT, "text", "text", -1, 'S', 1009, true),
    scalar(OID, "oid", "oid", 4, 'N', 1028, false),
    scalar(30, "oidvector", "oidvector", -1, 'A', 1013, false),
    scalar(114, "json", "json", -1, 'U', 199, false),
    scalar(700, "float4", "real", 4, 'N', 1021, false),
    scalar(FLOAT8, "float8", "double precision", 8, 'N', 1022, false),
    scalar(705, "unknown", "unknown", -2, 'X', 0, false),
    scalar(BPCHAR, "bpchar", "character", -1, 'S', 1014, true),
    scalar(VARCHAR, "varchar", "character varying", -1, 'S', 1015, true),
    scalar(1082, "date", "date", 4, 'D', 1182, false),
    scalar(1083, "time", "time without time zone", 8, 'D', 1183, false),
    scalar(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        'D',
        1115,
        false,
    ),
    scalar(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        'D',
        1185,
        false,
    ),
    scalar(1186, "interval", "interval", 16, 'T', 1187, false),
    scalar(NUMERIC, "numeric", "numeric", -1, 'N', 1231, false),
    scalar(2205, "regclass", "regclass", 4, 'N', 2210, false),
    scalar(2206, "regtype", "regtype", 4, 'N', 2211, false),
    scalar(2249, "record", "record", -1, 'P', 2287, false),
    scalar(2278, "void", "void", 4, 'P', 0, false),
    scalar(2950, "uuid", "uuid", 16, 'U', 2951, false),
    scalar(3802, "jsonb", "jsonb", -1, 'U', 3807, false),
    array(1000, "_bool", "boolean[]", BOOL),
    array(1001, "_bytea", "bytea[]", 17),
    array(1002, "_char", "\"char\"[]", 18),
    array(1003, "_name", "name[]", NAME),
    array(1005, "_int2", "smallint[]", INT2),
    array(1006, "_int2vector", "int2vector[]", 22),
    array(1007, "_int4", "integer[]", INT4),
    array(1008, "_regproc", "regproc[]", 24),
    array(1009, "_text", "text[]", TEXT),
    array(1013, "_oidvector", "oidvector[]", 30),
    array(1014, "_bpchar", "character[]", BPCHAR),
    array(1015, "_varchar", "character varying[]", VARCHAR),
    array(1016, "_int8", "bigint[]", INT8),
    array(1021, "_float4", "real[]", 700),
    array(1022, "_float8", "double precision[]", FLOAT8),
    array(1028, "_oid", "oid[]", OID),
    array(1115, "_timestamp", "timestamp without time zone[]", 1114),
    array(1182, "_date", "date[]", 1082),
    array(1183, "_time", "time without time zone[]", 1083),
    array(1185, "_timestamptz", "timestamp with time zone[]", 1184),
    array(1187, "_interval", "interval[]", 1186),
    array(1231, "_numeric", "numeric[]", NUMERIC),
    array(199, "_json", "json[]", 114),
    array(2210, "_regclass", "regclass[]", 2205),
    array(2211, "_regtype", "regtype[]", 2206),
    array(2287, "_record", "record[]", 2249),
    array(2951, "_uuid", "uuid[]", 2950),
    array(3807, "_jsonb", "jsonb[]", 3802),
];

/// The type with this OID.
pub fn by_oid(oid: i64) -> Option<&'static BuiltinType> {
    TYPES.iter().find(|t| i64::from(t.oid) == oid)
}

/// The type named `name` (`pg_type.typname` or a common alias such as `integer`).
pub fn by_name(name: &str) -> Option<&'static BuiltinType> {
    let lower = name.trim().trim_matches('"').to_ascii_lowercase();
    let lower = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
    let canonical = match lower {
        "boolean" => "bool",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    TYPES.iter().find(|t| t.name == canonical)
}

/// The PostgreSQL type (OID and `atttypmod`) a column declared `declared` in SQLite has: the
/// translator keeps PostgreSQL's type names in the schema, so this reads them back. An
/// undeclared or unknown type is `text`, as the front end reports it.
pub fn of_declared(declared: &str) -> (u32, i32) {
    let upper = declared.trim().to_ascii_uppercase();
    let (base, modifiers) = match upper.split_once('(') {
        Some((base, rest)) => (base.trim(), rest.trim_end_matches(')')),
        None => (upper.as_str(), ""),
    };
    let numbers: Vec<i32> = modifiers
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let oid = match base {
        "BOOL" | "BOOLEAN" => BOOL,
        "SMALLINT" | "INT2" | "SMALLSERIAL" | "SERIAL2" => INT2,
        "INT" | "INTEGER" | "INT4" | "SERIAL" | "SERIAL4" | "MEDIUMINT" => INT4,
        "BIGINT" | "INT8" | "BIGSERIAL" | "SERIAL8" => INT8,
        "REAL" | "FLOAT4" => 700,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" | "FLOAT8" => FLOAT8,
        "NUMERIC" | "DECIMAL" => NUMERIC,
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" => VARCHAR,
        "CHAR" | "CHARACTER" | "NCHAR" | "BPCHAR" => BPCHAR,
        "BYTEA" | "BLOB" => 17,
        "JSON" => 114,
        "JSONB" => 3802,
        "UUID" => 2950,
        "DATE" => 1082,
        "TIME" => 1083,
        "TIMESTAMP" => 1114,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => 1184,
        other if other.contains("INT") => INT8,
        other if other.contains("REAL") || other.contains("FLOA") || other.contains("DOUB") => {
            FLOAT8
        }
        _ => TEXT,
    };
    let typmod = match (oid, numbers.as_slice()) {
        (VARCHAR | BPCHAR, [length]) => length + 4,
        (NUMERIC, [precision]) => (precision << 16) + 4,
        (NUMERIC, [precision, scale]) => ((precision << 16) | scale) + 4,
        _ => -1,
    };
    (oid, typmod)
}

/// `format_type(oid, typmod)`: the type's SQL name with its modifiers, as `\d` shows it.
pub fn format_type(oid: i64, typmod: i64) -> String {
    let Some(ty) = by_oid(oid) else {
        return "???".to_owned();
    };
    let modifier = typmod - 4;
    match ty.oid {
        VARCHAR | BPCHAR if typmod >= 4 => format!("{}({modifier})", ty.sql_name),
        NUMERIC if typmod >= 4 => {
            format!(
                "numeric({},{})",
                (modifier >> 16) & 0xffff,
                modifier & 0xffff
            )
        }
        _ => ty.sql_name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_read_back_with_modifiers() {
        assert_eq!(of_declared("INTEGER"), (INT4, -1));
        assert_eq!(of_declared("numeric(10,2)"), (NUMERIC, (10 << 16 | 2) + 4));
        assert_eq!(of_declared("VARCHAR(20)"), (VARCHAR, 24));
        assert_eq!(of_declared("TIMESTAMPTZ"), (1184, -1));
        assert_eq!(of_declared(""), (TEXT, -1));
        assert_eq!(
            format_type(i64::from(NUMERIC), (10 << 16 | 2) + 4),
            "numeric(10,2)"
        );
        assert_eq!(format_type(i64::from(VARCHAR), 24), "character varying(20)");
        assert_eq!(format_type(1184, -1), "timestamp with time zone");
        assert_eq!(format_type(i64::from(INT4), -1), "integer");
    }

    #[test]
    fn every_array_points_at_its_element_and_back() {
        for ty in TYPES.iter().filter(|t| t.element != 0) {
            let element = by_oid(i64::from(ty.element)).expect("element exists");
            assert_eq!(element.array, ty.oid, "{}", ty.name);
        }
        assert_eq!(by_name("integer").map(|t| t.oid), Some(INT4));
        assert_eq!(by_name("pg_catalog.text").map(|t| t.oid), Some(TEXT));
    }
}
