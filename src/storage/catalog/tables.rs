//! The shape of every catalog table: PostgreSQL's columns (those clients read), each declared
//! with a type the front end maps back to PostgreSQL's (`OID`, `NAMETEXT` = name, `PGCHAR` =
//! "char", `INT2VECTOR`, `TEXT[]`, ...; arrays are stored as JSON arrays). Columns named
//! `phx_*` are Phalanx's own: precomputed text the `pg_get_*def` functions return.
//!
//! A column missing from a built row gets its type's zero value (false, 0, '') or NULL
//! for text and arrays, matching what PostgreSQL shows for an unused feature.

/// One catalog table: its schema (`pg_catalog` or `information_schema`), name and columns.
pub struct CatalogTable {
    pub schema: &'static str,
    pub name: &'static str,
    /// `name TYPE` pairs.
    pub columns: &'static [(&'static str, &'static str)],
    /// Its OID in `pg_class` (PostgreSQL's own, so `'pg_class'::regclass` means the same).
    pub oid: u32,
}

macro_rules! table {
    ($schema:literal, $name:literal, $oid:literal, [$($column:literal $ty:literal),* $(,)?]) => {
        CatalogTable {
            schema: $schema,
            name: $name,
            oid: $oid,
            columns: &[$(($column, $ty)),*],
        }
    };
}

pub const TABLES: &[CatalogTable] = &[
    table!("pg_catalog", "pg_namespace", 2615, ["oid" "OID", "nspname" "NAMETEXT", "nspowner" "OID", "nspacl" "TEXT[]"]),
    table!("pg_catalog", "pg_class", 1259, [
        "oid" "OID", "relname" "NAMETEXT", "relnamespace" "OID", "reltype" "OID", "reloftype" "OID",
        "relowner" "OID", "relam" "OID", "relfilenode" "OID", "reltablespace" "OID",
        "relpages" "INT4", "reltuples" "FLOAT4", "relallvisible" "INT4", "reltoastrelid" "OID",
        "relhasindex" "BOOL", "relisshared" "BOOL", "relpersistence" "PGCHAR", "relkind" "PGCHAR",
        "relnatts" "INT2", "relchecks" "INT2", "relhasrules" "BOOL", "relhastriggers" "BOOL",
        "relhassubclass" "BOOL", "relrowsecurity" "BOOL", "relforcerowsecurity" "BOOL",
        "relispopulated" "BOOL", "relreplident" "PGCHAR", "relispartition" "BOOL",
        "relrewrite" "OID", "relacl" "TEXT[]", "reloptions" "TEXT[]", "relpartbound" "TEXT",
    ]),
    table!("pg_catalog", "pg_attribute", 1249, [
        "attrelid" "OID", "attname" "NAMETEXT", "atttypid" "OID", "attstattarget" "INT4",
        "attlen" "INT2", "attnum" "INT2", "attndims" "INT4", "attcacheoff" "INT4",
        "atttypmod" "INT4", "attbyval" "BOOL", "attalign" "PGCHAR", "attstorage" "PGCHAR",
        "attcompression" "PGCHAR", "attnotnull" "BOOL", "atthasdef" "BOOL",
        "atthasmissing" "BOOL", "attidentity" "PGCHAR", "attgenerated" "PGCHAR",
        "attisdropped" "BOOL", "attislocal" "BOOL", "attinhcount" "INT4", "attcollation" "OID",
        "attacl" "TEXT[]", "attoptions" "TEXT[]", "attfdwoptions" "TEXT[]",
    ]),
    table!("pg_catalog", "pg_attrdef", 2604, ["oid" "OID", "adrelid" "OID", "adnum" "INT2", "adbin" "TEXT"]),
    table!("pg_catalog", "pg_index", 2610, [
        "indexrelid" "OID", "indrelid" "OID", "indnatts" "INT2", "indnkeyatts" "INT2",
        "indisunique" "BOOL", "indnullsnotdistinct" "BOOL", "indisprimary" "BOOL",
        "indisexclusion" "BOOL", "indimmediate" "BOOL", "indisclustered" "BOOL",
        "indisvalid" "BOOL", "indcheckxmin" "BOOL", "indisready" "BOOL", "indislive" "BOOL",
        "indisreplident" "BOOL", "indkey" "INT2VECTOR", "indcollation" "OIDVECTOR",
        "indclass" "OIDVECTOR", "indoption" "INT2VECTOR", "indexprs" "TEXT", "indpred" "TEXT",
        "phx_indexdef" "TEXT", "phx_indexcols" "TEXT",
    ]),
    table!("pg_catalog", "pg_constraint", 2606, [
        "oid" "OID", "conname" "NAMETEXT", "connamespace" "OID", "contype" "PGCHAR",
        "condeferrable" "BOOL", "condeferred" "BOOL", "convalidated" "BOOL", "conrelid" "OID",
        "contypid" "OID", "conindid" "OID", "conparentid" "OID", "confrelid" "OID",
        "confupdtype" "PGCHAR", "confdeltype" "PGCHAR", "confmatchtype" "PGCHAR",
        "conislocal" "BOOL", "coninhcount" "INT4", "connoinherit" "BOOL", "conkey" "INT2[]",
        "confkey" "INT2[]", "conbin" "TEXT", "phx_condef" "TEXT",
    ]),
    table!("pg_catalog", "pg_type", 1247, [
        "oid" "OID", "typname" "NAMETEXT", "typnamespace" "OID", "typowner" "OID",
        "typlen" "INT2", "typbyval" "BOOL", "typtype" "PGCHAR", "typcategory" "PGCHAR",
        "typispreferred" "BOOL", "typisdefined" "BOOL", "typdelim" "PGCHAR", "typrelid" "OID",
        "typsubscript" "OID", "typelem" "OID", "typarray" "OID", "typinput" "TEXT",
        "typoutput" "TEXT", "typreceive" "TEXT", "typsend" "TEXT", "typalign" "PGCHAR",
        "typstorage" "PGCHAR", "typnotnull" "BOOL", "typbasetype" "OID", "typtypmod" "INT4",
        "typndims" "INT4", "typcollation" "OID", "typdefault" "TEXT", "typacl" "TEXT[]",
    ]),
    table!("pg_catalog", "pg_am", 2601, ["oid" "OID", "amname" "NAMETEXT", "amhandler" "TEXT", "amtype" "PGCHAR"]),
    table!("pg_catalog", "pg_database", 1262, [
        "oid" "OID", "datname" "NAMETEXT", "datdba" "OID", "encoding" "INT4",
        "datlocprovider" "PGCHAR", "datistemplate" "BOOL", "datallowconn" "BOOL",
        "datconnlimit" "INT4", "datcollate" "TEXT", "datctype" "TEXT", "daticulocale" "TEXT",
        "datcollversion" "TEXT", "dattablespace" "OID", "datacl" "TEXT[]",
    ]),
    table!("pg_catalog", "pg_roles", 11671, [
        "oid" "OID", "rolname" "NAMETEXT", "rolsuper" "BOOL", "rolinherit" "BOOL",
        "rolcreaterole" "BOOL", "rolcreatedb" "BOOL", "rolcanlogin" "BOOL",
        "rolreplication" "BOOL", "rolconnlimit" "INT4", "rolpassword" "TEXT",
        "rolvaliduntil" "TEXT", "rolbypassrls" "BOOL", "rolconfig" "TEXT[]",
    ]),
    table!("pg_catalog", "pg_user", 11675, [
        "usename" "NAMETEXT", "usesysid" "OID", "usecreatedb" "BOOL", "usesuper" "BOOL",
        "userepl" "BOOL", "usebypassrls" "BOOL", "passwd" "TEXT", "valuntil" "TEXT",
        "useconfig" "TEXT[]",
    ]),
    table!("pg_catalog", "pg_auth_members", 1261, ["roleid" "OID", "member" "OID", "grantor" "OID", "admin_option" "BOOL"]),
    table!("pg_catalog", "pg_collation", 3456, [
        "oid" "OID", "collname" "NAMETEXT", "collnamespace" "OID", "collowner" "OID",
        "collprovider" "PGCHAR", "collisdeterministic" "BOOL", "collencoding" "INT4",
        "collcollate" "TEXT", "collctype" "TEXT",
    ]),
    table!("pg_catalog", "pg_description", 2609, ["objoid" "OID", "classoid" "OID", "objsubid" "INT4", "description" "TEXT"]),
    table!("pg_catalog", "pg_shdescription", 2396, ["objoid" "OID", "classoid" "OID", "description" "TEXT"]),
    table!("pg_catalog", "pg_sequence", 2224, [
        "seqrelid" "OID", "seqtypid" "OID", "seqstart" "INT8", "seqincrement" "INT8",
        "seqmax" "INT8", "seqmin" "INT8", "seqcache" "INT8", "seqcycle" "BOOL",
    ]),
    table!("pg_catalog", "pg_tablespace", 1213, ["oid" "OID", "spcname" "NAMETEXT", "spcowner" "OID", "spcacl" "TEXT[]", "spcoptions" "TEXT[]"]),
    table!("pg_catalog", "pg_policy", 3256, [
        "oid" "OID", "polname" "NAMETEXT", "polrelid" "OID", "polcmd" "PGCHAR",
        "polpermissive" "BOOL", "polroles" "OID[]", "polqual" "TEXT", "polwithcheck" "TEXT",
    ]),
    table!("pg_catalog", "pg_statistic_ext", 3381, [
        "oid" "OID", "stxrelid" "OID", "stxname" "NAMETEXT", "stxnamespace" "OID",
        "stxowner" "OID", "stxstattarget" "INT4", "stxkeys" "INT2VECTOR", "stxkind" "PGCHAR[]",
        "stxexprs" "TEXT",
    ]),
    table!("pg_catalog", "pg_publication", 6104, [
        "oid" "OID", "pubname" "NAMETEXT", "pubowner" "OID", "puballtables" "BOOL",
        "pubinsert" "BOOL", "pubupdate" "BOOL", "pubdelete" "BOOL", "pubtruncate" "BOOL",
        "pubviaroot" "BOOL",
    ]),
    table!("pg_catalog", "pg_publication_namespace", 6237, ["oid" "OID", "pnpubid" "OID", "pnnspid" "OID"]),
    table!("pg_catalog", "pg_publication_rel", 6106, ["oid" "OID", "prpubid" "OID", "prrelid" "OID", "prqual" "TEXT", "prattrs" "INT2VECTOR"]),
    table!("pg_catalog", "pg_trigger", 2620, [
        "oid" "OID", "tgrelid" "OID", "tgparentid" "OID", "tgname" "NAMETEXT", "tgfoid" "OID",
        "tgtype" "INT2", "tgenabled" "PGCHAR", "tgisinternal" "BOOL", "tgconstrrelid" "OID",
        "tgconstrindid" "OID", "tgconstraint" "OID", "tgdeferrable" "BOOL",
        "tginitdeferred" "BOOL", "tgnargs" "INT2", "tgattr" "INT2VECTOR", "tgargs" "TEXT",
        "tgqual" "TEXT", "tgoldtable" "NAMETEXT", "tgnewtable" "NAMETEXT",
    ]),
    table!("pg_catalog", "pg_inherits", 2611, ["inhrelid" "OID", "inhparent" "OID", "inhseqno" "INT4", "inhdetachpending" "BOOL"]),
    table!("pg_catalog", "pg_opclass", 2616, [
        "oid" "OID", "opcmethod" "OID", "opcname" "NAMETEXT", "opcnamespace" "OID",
        "opcowner" "OID", "opcfamily" "OID", "opcintype" "OID", "opcdefault" "BOOL",
        "opckeytype" "OID",
    ]),
    table!("pg_catalog", "pg_proc", 1255, [
        "oid" "OID", "proname" "NAMETEXT", "pronamespace" "OID", "proowner" "OID",
        "prolang" "OID", "prokind" "PGCHAR", "proretset" "BOOL", "prorettype" "OID",
        "proargtypes" "OIDVECTOR", "prosrc" "TEXT",
    ]),
    table!("pg_catalog", "pg_extension", 3079, [
        "oid" "OID", "extname" "NAMETEXT", "extowner" "OID", "extnamespace" "OID",
        "extrelocatable" "BOOL", "extversion" "TEXT",
    ]),
    table!("pg_catalog", "pg_enum", 3501, ["oid" "OID", "enumtypid" "OID", "enumsortorder" "FLOAT4", "enumlabel" "NAMETEXT"]),
    table!("pg_catalog", "pg_depend", 2608, [
        "classid" "OID", "objid" "OID", "objsubid" "INT4", "refclassid" "OID",
        "refobjid" "OID", "refobjsubid" "INT4", "deptype" "PGCHAR",
    ]),
    table!("pg_catalog", "pg_rewrite", 2618, ["oid" "OID", "rulename" "NAMETEXT", "ev_class" "OID", "ev_type" "PGCHAR", "ev_enabled" "PGCHAR", "is_instead" "BOOL"]),
    table!("pg_catalog", "pg_settings", 11748, [
        "name" "TEXT", "setting" "TEXT", "unit" "TEXT", "category" "TEXT", "short_desc" "TEXT",
        "extra_desc" "TEXT", "context" "TEXT", "vartype" "TEXT", "source" "TEXT",
        "min_val" "TEXT", "max_val" "TEXT", "enumvals" "TEXT[]", "boot_val" "TEXT",
        "reset_val" "TEXT", "sourcefile" "TEXT", "sourceline" "INT4", "pending_restart" "BOOL",
    ]),
    table!("pg_catalog", "pg_tables", 11763, [
        "schemaname" "NAMETEXT", "tablename" "NAMETEXT", "tableowner" "NAMETEXT",
        "tablespace" "NAMETEXT", "hasindexes" "BOOL", "hasrules" "BOOL", "hastriggers" "BOOL",
        "rowsecurity" "BOOL",
    ]),
    table!("pg_catalog", "pg_views", 11759, ["schemaname" "NAMETEXT", "viewname" "NAMETEXT", "viewowner" "NAMETEXT", "definition" "TEXT"]),
    table!("pg_catalog", "pg_indexes", 11771, [
        "schemaname" "NAMETEXT", "tablename" "NAMETEXT", "indexname" "NAMETEXT",
        "tablespace" "NAMETEXT", "indexdef" "TEXT",
    ]),
    table!("pg_catalog", "pg_matviews", 11767, ["schemaname" "NAMETEXT", "matviewname" "NAMETEXT", "matviewowner" "NAMETEXT", "definition" "TEXT"]),
    table!("information_schema", "schemata", 13100, [
        "catalog_name" "NAMETEXT", "schema_name" "NAMETEXT", "schema_owner" "NAMETEXT",
    ]),
    table!("information_schema", "tables", 13101, [
        "table_catalog" "NAMETEXT", "table_schema" "NAMETEXT", "table_name" "NAMETEXT",
        "table_type" "TEXT", "self_referencing_column_name" "NAMETEXT",
        "reference_generation" "TEXT", "user_defined_type_catalog" "NAMETEXT",
        "user_defined_type_schema" "NAMETEXT", "user_defined_type_name" "NAMETEXT",
        "is_insertable_into" "TEXT", "is_typed" "TEXT", "commit_action" "TEXT",
    ]),
    table!("information_schema", "columns", 13102, [
        "table_catalog" "NAMETEXT", "table_schema" "NAMETEXT", "table_name" "NAMETEXT",
        "column_name" "NAMETEXT", "ordinal_position" "INT4", "column_default" "TEXT",
        "is_nullable" "TEXT", "data_type" "TEXT", "character_maximum_length" "INT4",
        "character_octet_length" "INT4", "numeric_precision" "INT4",
        "numeric_precision_radix" "INT4", "numeric_scale" "INT4", "datetime_precision" "INT4",
        "udt_catalog" "NAMETEXT", "udt_schema" "NAMETEXT", "udt_name" "NAMETEXT",
        "is_identity" "TEXT", "identity_generation" "TEXT", "is_generated" "TEXT",
        "generation_expression" "TEXT", "is_updatable" "TEXT",
    ]),
    table!("information_schema", "table_constraints", 13103, [
        "constraint_catalog" "NAMETEXT", "constraint_schema" "NAMETEXT",
        "constraint_name" "NAMETEXT", "table_catalog" "NAMETEXT", "table_schema" "NAMETEXT",
        "table_name" "NAMETEXT", "constraint_type" "TEXT", "is_deferrable" "TEXT",
        "initially_deferred" "TEXT", "enforced" "TEXT", "nulls_distinct" "TEXT",
    ]),
    table!("information_schema", "key_column_usage", 13104, [
        "constraint_catalog" "NAMETEXT", "constraint_schema" "NAMETEXT",
        "constraint_name" "NAMETEXT", "table_catalog" "NAMETEXT", "table_schema" "NAMETEXT",
        "table_name" "NAMETEXT", "column_name" "NAMETEXT", "ordinal_position" "INT4",
        "position_in_unique_constraint" "INT4",
    ]),
    table!("information_schema", "referential_constraints", 13105, [
        "constraint_catalog" "NAMETEXT", "constraint_schema" "NAMETEXT",
        "constraint_name" "NAMETEXT", "unique_constraint_catalog" "NAMETEXT",
        "unique_constraint_schema" "NAMETEXT", "unique_constraint_name" "NAMETEXT",
        "match_option" "TEXT", "update_rule" "TEXT", "delete_rule" "TEXT",
    ]),
    table!("information_schema", "views", 13106, [
        "table_catalog" "NAMETEXT", "table_schema" "NAMETEXT", "table_name" "NAMETEXT",
        "view_definition" "TEXT", "check_option" "TEXT", "is_updatable" "TEXT",
        "is_insertable_into" "TEXT",
    ]),
];

/// The catalog table `schema.name`.
pub fn find(schema: &str, name: &str) -> Option<&'static CatalogTable> {
    TABLES
        .iter()
        .find(|t| t.schema.eq_ignore_ascii_case(schema) && t.name.eq_ignore_ascii_case(name))
}

/// The zero value a column of this declared type holds when a row does not set it.
pub fn default_value(declared: &str) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match declared {
        "OID" | "BOOL" | "INT2" | "INT4" | "INT8" => Value::Integer(0),
        "FLOAT4" => Value::Real(0.0),
        "PGCHAR" => Value::Text(String::new()),
        _ => Value::Null,
    }
}
