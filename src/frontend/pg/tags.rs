//! CommandComplete tags, exactly as PostgreSQL writes them: `INSERT 0 3`, `UPDATE 2`,
//! `DELETE 0`, `SELECT 5`, `CREATE TABLE`, `DROP INDEX`, ...

use crate::frontend::pg::sql::SqlText;

/// How a statement's tag is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagKind {
    /// `INSERT 0 N` (PostgreSQL still writes the long-gone OID, always 0).
    Insert,
    /// `UPDATE N`, `DELETE N`, `SELECT N`, `MERGE N`: the keyword and a row count.
    Counted(&'static str),
    /// A fixed tag: `CREATE TABLE`, `SET`, `EXPLAIN`, ...
    Fixed(String),
}

impl TagKind {
    /// The tag for a statement that affected or returned `rows` rows.
    pub fn tag(&self, rows: u64) -> String {
        match self {
            TagKind::Insert => format!("INSERT 0 {rows}"),
            TagKind::Counted(keyword) => format!("{keyword} {rows}"),
            TagKind::Fixed(tag) => tag.clone(),
        }
    }

    /// The command part pgwire's row-streaming path completes with the row count
    /// (`"INSERT 0"` + `" 3"`), for statements that return rows.
    pub fn row_prefix(&self) -> String {
        match self {
            TagKind::Insert => "INSERT 0".into(),
            TagKind::Counted(keyword) => (*keyword).into(),
            TagKind::Fixed(tag) => tag.clone(),
        }
    }

    /// Whether the tag carries a row count (and so pgwire must append it).
    pub fn counts_rows(&self) -> bool {
        !matches!(self, TagKind::Fixed(_))
    }
}

/// The tag kind for a statement, from its leading words (`WITH ...` by its main statement).
pub fn tag_kind(statement: &SqlText) -> TagKind {
    let words: Vec<String> = statement
        .tokens
        .iter()
        .take(8)
        .map(|t| t.text(&statement.sql).to_ascii_uppercase())
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "INSERT" | "REPLACE" => TagKind::Insert,
        "UPDATE" => TagKind::Counted("UPDATE"),
        "DELETE" => TagKind::Counted("DELETE"),
        "SELECT" | "VALUES" | "TABLE" | "(" => TagKind::Counted("SELECT"),
        "WITH" => main_statement_tag(statement),
        "CREATE" | "DROP" | "ALTER" => {
            let object = |i: usize| -> String {
                match word(i) {
                    "UNIQUE" => object_words(&words, i + 1),
                    "TEMP" | "TEMPORARY" | "VIRTUAL" => object_words(&words, i + 1),
                    _ => object_words(&words, i),
                }
            };
            let object = if word(1) == "OR" && word(2) == "REPLACE" {
                object(3)
            } else {
                object(1)
            };
            TagKind::Fixed(format!("{} {object}", word(0)).trim_end().to_owned())
        }
        "" => TagKind::Fixed(String::new()),
        other => TagKind::Fixed(other.to_owned()),
    }
}

fn object_words(words: &[String], i: usize) -> String {
    match words.get(i).map(String::as_str) {
        Some("MATERIALIZED") => "MATERIALIZED VIEW".into(),
        Some(object) => object.to_owned(),
        None => String::new(),
    }
}

/// `WITH a AS (...), b AS (...) INSERT ...`: the tag of the statement after the CTEs.
fn main_statement_tag(statement: &SqlText) -> TagKind {
    let mut depth = 0i32;
    for token in &statement.tokens {
        let text = token.text(&statement.sql).to_ascii_uppercase();
        match text.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            "INSERT" | "REPLACE" if depth == 0 => return TagKind::Insert,
            "UPDATE" if depth == 0 => return TagKind::Counted("UPDATE"),
            "DELETE" if depth == 0 => return TagKind::Counted("DELETE"),
            "SELECT" | "VALUES" if depth == 0 => return TagKind::Counted("SELECT"),
            _ => {}
        }
    }
    TagKind::Counted("SELECT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(sql: &str, rows: u64) -> String {
        tag_kind(&SqlText::new(sql)).tag(rows)
    }

    #[test]
    fn tags_match_postgres() {
        assert_eq!(tag("insert into t values (1)", 1), "INSERT 0 1");
        assert_eq!(tag("UPDATE t SET a = 1", 3), "UPDATE 3");
        assert_eq!(tag("delete from t", 0), "DELETE 0");
        assert_eq!(tag("select * from t", 2), "SELECT 2");
        assert_eq!(tag("VALUES (1), (2)", 2), "SELECT 2");
        assert_eq!(tag("create table t (a int)", 0), "CREATE TABLE");
        assert_eq!(tag("CREATE TEMP TABLE t (a)", 0), "CREATE TABLE");
        assert_eq!(tag("create unique index i on t(a)", 0), "CREATE INDEX");
        assert_eq!(tag("DROP TABLE IF EXISTS t", 0), "DROP TABLE");
        assert_eq!(
            tag("create or replace view v as select 1", 0),
            "CREATE VIEW"
        );
        assert_eq!(tag("ALTER TABLE t ADD COLUMN b", 0), "ALTER TABLE");
        assert_eq!(
            tag("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", 4),
            "INSERT 0 4"
        );
        assert_eq!(tag("WITH x AS (SELECT 1) SELECT * FROM x", 1), "SELECT 1");
        assert_eq!(tag("explain select 1", 0), "EXPLAIN");
    }
}
