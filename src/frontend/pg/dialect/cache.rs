//! Translations of statement *shapes* already seen, so a statement sent again with other
//! numbers (`... WHERE aid = 1234`, then `= 5678`: pgbench, and any client that writes values
//! into its SQL text) is not parsed, rewritten and printed again.
//!
//! A shape is the statement with each small integer literal (1–9 digits) replaced by a
//! *sentinel* number. On a miss the sentinel text is translated; every sentinel must come out
//! as a number of its own (so the translator copied the literal and did not compute with it),
//! and the template filled with the real literals must equal the real statement's own
//! translation; only then is the template kept. A shape that fails either check is remembered
//! as uncacheable and always translated afresh. Only `SELECT`/`INSERT`/`UPDATE`/`DELETE`/
//! `WITH`/`VALUES` statements are cached: DDL is rare and its numbers (type lengths) steer the
//! translation. Errors are never cached (their messages quote the statement).
//!
//! The translation is a pure function of the text, so one cache serves every session.

use std::sync::{Arc, LazyLock, Mutex};

use hashlink::LruCache;

use super::{TranslateError, Translation};
use crate::frontend::pg::sql::{SqlText, TokenKind};

/// Shapes kept (least recently used dropped first).
const CAPACITY: usize = 4096;
/// Longer statements are translated afresh (bulk INSERTs are not worth keeping).
const MAX_SQL_BYTES: usize = 4096;
/// Statements with more literals than this are translated afresh.
const MAX_LITERALS: usize = 64;
/// Sentinel `i` is `SENTINEL_BASE + SENTINEL_STEP * i`: ten digits starting with `1987`, within
/// PostgreSQL's int4 range as every replaced literal is (so result types do not change), and far
/// apart, so a value the translator derived from one (±1) is no sentinel.
const SENTINEL_BASE: u64 = 1_987_000_500;
const SENTINEL_STEP: u64 = 1000;
/// A statement whose text already contains this is never cached: its sentinels would be ambiguous.
const SENTINEL_PREFIX: &str = "1987";

static SHAPES: LazyLock<Mutex<LruCache<String, Option<Arc<Template>>>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(CAPACITY)));

/// A translation with holes where the statement's literals go.
#[derive(Debug)]
struct Template {
    /// Each output statement as text pieces and literal numbers.
    statements: Vec<Vec<Piece>>,
    tag: Option<crate::frontend::pg::tags::TagKind>,
    column_decltypes: Vec<Option<String>>,
}

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Literal(usize),
}

/// How a lookup went (for tests and the translation-cost example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    /// Translated now; the shape is kept for next time.
    Stored,
    /// Translated afresh: the statement or its shape cannot be cached.
    Fresh,
}

/// Translates `statement`, from its shape's template when there is one.
pub fn translate(
    statement: &SqlText,
    fresh: impl Fn(&SqlText) -> Result<Translation, TranslateError>,
) -> (Result<Translation, TranslateError>, Lookup) {
    let Some((shape, literals)) = shape_of(statement) else {
        return (fresh(statement), Lookup::Fresh);
    };
    let known = lock().get(&shape).cloned();
    match known {
        Some(Some(template)) => (Ok(template.fill(&literals)), Lookup::Hit),
        Some(None) => (fresh(statement), Lookup::Fresh),
        None => {
            let real = fresh(statement);
            let Ok(translation) = &real else {
                return (real, Lookup::Fresh);
            };
            let template = fresh(&SqlText::new(&shape))
                .ok()
                .and_then(|t| Template::from_translation(t, literals.len()))
                .filter(|template| template.fill(&literals) == *translation)
                .map(Arc::new);
            let lookup = if template.is_some() {
                Lookup::Stored
            } else {
                Lookup::Fresh
            };
            lock().insert(shape, template);
            (real, lookup)
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, LruCache<String, Option<Arc<Template>>>> {
    // A panic while holding the lock cannot leave the map half-changed in a way that matters:
    // every entry is checked when stored.
    SHAPES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sentinel(index: usize) -> String {
    (SENTINEL_BASE + SENTINEL_STEP * index as u64).to_string()
}

/// The statement's shape (its text with sentinels for its small integer literals) and those
/// literals, or `None` when it is not to be cached.
fn shape_of(statement: &SqlText) -> Option<(String, Vec<&str>)> {
    let sql = &statement.sql;
    let cached_kind = ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES"]
        .iter()
        .any(|word| statement.is_word(0, word));
    if !cached_kind || sql.len() > MAX_SQL_BYTES || sql.contains(SENTINEL_PREFIX) {
        return None;
    }
    let mut shape = String::with_capacity(sql.len() + 16);
    let mut literals = Vec::new();
    let mut copied = 0;
    for token in &statement.tokens {
        let text = token.text(sql);
        let small_integer = token.kind == TokenKind::Number
            && text.len() <= 9
            && text.bytes().all(|b| b.is_ascii_digit());
        if !small_integer {
            continue;
        }
        if literals.len() == MAX_LITERALS {
            return None;
        }
        shape.push_str(&sql[copied..token.start]);
        shape.push_str(&sentinel(literals.len()));
        copied = token.end;
        literals.push(text);
    }
    shape.push_str(&sql[copied..]);
    Some((shape, literals))
}

impl Template {
    /// Splits a sentinel statement's translation at its sentinels; `None` unless every digit
    /// run that looks like a sentinel is exactly one, and each of the `literals` appears.
    fn from_translation(translation: Translation, literals: usize) -> Option<Template> {
        let mut seen = vec![false; literals];
        let mut statements = Vec::with_capacity(translation.statements.len());
        for sql in &translation.statements {
            statements.push(split_at_sentinels(sql, &mut seen)?);
        }
        if !seen.iter().all(|s| *s) {
            return None;
        }
        if translation
            .column_decltypes
            .iter()
            .flatten()
            .any(|t| t.contains(SENTINEL_PREFIX))
        {
            return None;
        }
        Some(Template {
            statements,
            tag: translation.tag,
            column_decltypes: translation.column_decltypes,
        })
    }

    fn fill(&self, literals: &[&str]) -> Translation {
        let statements = self
            .statements
            .iter()
            .map(|pieces| {
                let mut sql = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => sql.push_str(text),
                        // Indexes were checked against the literal count when stored.
                        Piece::Literal(i) => sql.push_str(literals.get(*i).copied().unwrap_or("")),
                    }
                }
                sql
            })
            .collect();
        Translation {
            statements,
            tag: self.tag.clone(),
            column_decltypes: self.column_decltypes.clone(),
        }
    }
}

fn split_at_sentinels(sql: &str, seen: &mut [bool]) -> Option<Vec<Piece>> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let run = &sql[start..i];
        if !run.contains(SENTINEL_PREFIX) {
            continue;
        }
        let index = run
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_sub(SENTINEL_BASE))
            .filter(|offset| offset % SENTINEL_STEP == 0)
            .and_then(|offset| usize::try_from(offset / SENTINEL_STEP).ok())
            .filter(|index| *index < seen.len())?;
        seen[index] = true;
        if copied < start {
            pieces.push(Piece::Text(sql[copied..start].to_owned()));
        }
        pieces.push(Piece::Literal(index));
        copied = i;
    }
    if copied < sql.len() {
        pieces.push(Piece::Text(sql[copied..].to_owned()));
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(sql: &str) -> (Result<Translation, TranslateError>, Lookup) {
        translate(&SqlText::new(sql), super::super::translate_uncached)
    }

    fn fresh(sql: &str) -> Result<Translation, TranslateError> {
        super::super::translate_uncached(&SqlText::new(sql))
    }

    /// Two statements of one shape: the first stores (or refuses) the shape, the second must
    /// translate exactly as a fresh translation does.
    fn same_as_fresh(first: &str, second: &str) -> Lookup {
        let (one, _) = cached(first);
        assert_eq!(one, fresh(first), "{first}");
        let (two, lookup) = cached(second);
        assert_eq!(two, fresh(second), "{second}");
        lookup
    }

    #[test]
    fn a_statement_with_other_numbers_is_filled_in_from_its_shape() {
        let lookup = same_as_fresh(
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1234",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 98765",
        );
        assert_eq!(lookup, Lookup::Hit);
        let lookup = same_as_fresh(
            "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 17",
            "UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 900000",
        );
        assert_eq!(lookup, Lookup::Hit);
        let lookup = same_as_fresh(
            "INSERT INTO h (tid, bid, aid, delta, mtime) VALUES (7, 1, 1234, -4321, CURRENT_TIMESTAMP)",
            "INSERT INTO h (tid, bid, aid, delta, mtime) VALUES (3, 2, 007, -9, CURRENT_TIMESTAMP)",
        );
        assert_eq!(lookup, Lookup::Hit);
    }

    #[test]
    fn numbers_the_translator_reads_or_changes_are_never_filled_in() {
        // Casts of literals are evaluated at translation; a cast to boolean loses the number,
        // to smallint rejects the sentinel: such shapes are translated afresh every time.
        for (first, second) in [
            ("SELECT 1::boolean FROM t", "SELECT 0::boolean FROM t"),
            ("SELECT 5::smallint FROM t", "SELECT 40000::smallint FROM t"),
            (
                "SELECT 'abcdef'::varchar(3) FROM t",
                "SELECT 'abcdef'::varchar(2) FROM t",
            ),
        ] {
            let lookup = same_as_fresh(first, second);
            assert_eq!(lookup, Lookup::Fresh, "{first}");
        }
    }

    #[test]
    fn varied_statements_translate_as_fresh_ones_do() {
        for (first, second) in [
            (
                "SELECT * FROM t ORDER BY 1 LIMIT 10 OFFSET 20",
                "SELECT * FROM t ORDER BY 2 LIMIT 1 OFFSET 0",
            ),
            (
                "SELECT 5::text, 2.5, 1e3 FROM t",
                "SELECT 6::text, 2.5, 1e3 FROM t",
            ),
            (
                "SELECT 5::float8, -3::bigint FROM t",
                "SELECT 12::float8, -4::bigint FROM t",
            ),
            (
                "SELECT x FROM t WHERE id = ANY(ARRAY[1, 2, 3])",
                "SELECT x FROM t WHERE id = ANY(ARRAY[4, 5, 6])",
            ),
            (
                "SELECT * FROM generate_series(1, 10) AS s",
                "SELECT * FROM generate_series(3, 4) AS s",
            ),
            (
                "SELECT round(x::numeric, 2) FROM t",
                "SELECT round(x::numeric, 3) FROM t",
            ),
            (
                "WITH a AS (SELECT 1 AS v) SELECT v + 2 FROM a",
                "WITH a AS (SELECT 7 AS v) SELECT v + 8 FROM a",
            ),
            (
                "DELETE FROM t WHERE id BETWEEN 1 AND 99 RETURNING id",
                "DELETE FROM t WHERE id BETWEEN 5 AND 6 RETURNING id",
            ),
            ("SELECT 123456789012 FROM t", "SELECT 123456789013 FROM t"),
            ("SELECT '1987' || 5 FROM t", "SELECT '1987' || 6 FROM t"),
            ("SELECT $1::int + 1 FROM t", "SELECT $1::int + 2 FROM t"),
        ] {
            same_as_fresh(first, second);
        }
    }

    #[test]
    fn errors_and_ddl_are_not_cached() {
        assert_eq!(cached("SELEC 1").1, Lookup::Fresh);
        assert_eq!(cached("SELEC 1").1, Lookup::Fresh);
        assert_eq!(cached("CREATE TABLE c1 (v VARCHAR(10))").1, Lookup::Fresh);
        assert_eq!(cached("CREATE TABLE c1 (v VARCHAR(10))").1, Lookup::Fresh);
        // A shape whose first statement failed is tried again with the next one.
        let (error, _) = cached("SELECT 40000::smallint FROM u");
        assert!(error.is_err());
        let (ok, _) = cached("SELECT 4::smallint FROM u");
        assert_eq!(ok, fresh("SELECT 4::smallint FROM u"));
    }

    #[test]
    fn split_refuses_derived_numbers_and_out_of_range_sentinels() {
        let mut seen = vec![false; 2];
        assert!(split_at_sentinels("a = 1987000499", &mut seen).is_none());
        assert!(split_at_sentinels("a = 1987002500", &mut seen).is_none());
        let pieces = split_at_sentinels("a = 1987001500 + 1987000500", &mut seen).expect("split");
        assert_eq!(
            pieces,
            [
                Piece::Text("a = ".into()),
                Piece::Literal(1),
                Piece::Text(" + ".into()),
                Piece::Literal(0)
            ]
        );
        assert_eq!(seen, [true, true]);
    }
}
