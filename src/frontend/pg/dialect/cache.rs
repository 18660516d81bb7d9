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
//!
//! A simple-query statement may also have its literals *lifted* ([`translate_lifting`]): those
//! in value positions ([`super::lift`]) become the parameters `?1`, `?2`, ... of the SQLite
//! text, so every statement of a shape is one SQLite statement, prepared once per connection
//! (SQLite's parser and planner cost more than the rest of a point read).

use std::sync::{Arc, LazyLock, Mutex};

use hashlink::LruCache;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::{RECURSION_LIMIT, TranslateError, Translation};
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
    /// The literals (by index) a lifted translation sends as parameters, in parameter order.
    lifted: Vec<usize>,
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
    let (found, lookup) = find(statement, fresh);
    let translation = found.map(|found| match found {
        Found::Translated(translation) => translation,
        Found::Template(template, literals) => template.fill(&literals),
    });
    (translation, lookup)
}

/// Translates `statement` as [`translate`] does, then lifts the literals its template found in
/// value positions into parameters: run the translation with the returned values bound to
/// `?1`, `?2`, ... A statement without a template, or with `$N` parameters of its own, comes
/// back with its literals in place and no values.
pub fn translate_lifting(
    statement: &SqlText,
    fresh: impl Fn(&SqlText) -> Result<Translation, TranslateError>,
) -> (Result<(Translation, Vec<i64>), TranslateError>, Lookup) {
    let has_params = statement
        .tokens
        .iter()
        .any(|t| matches!(t.kind, TokenKind::Param(_)));
    let (found, lookup) = find(statement, fresh);
    let lifted = found.map(|found| match found {
        Found::Translated(translation) => (translation, Vec::new()),
        Found::Template(template, literals) if has_params => (template.fill(&literals), Vec::new()),
        Found::Template(template, literals) => template.fill_lifted(&literals),
    });
    (lifted, lookup)
}

/// A statement's translation, or the template and literals that fill it in.
enum Found<'a> {
    Translated(Translation),
    Template(Arc<Template>, Vec<&'a str>),
}

/// Looks `statement`'s shape up, storing (or refusing) the shape on a miss.
fn find<'a>(
    statement: &'a SqlText,
    fresh: impl Fn(&SqlText) -> Result<Translation, TranslateError>,
) -> (Result<Found<'a>, TranslateError>, Lookup) {
    let Some((shape, literals)) = shape_of(statement) else {
        return (fresh(statement).map(Found::Translated), Lookup::Fresh);
    };
    let known = lock().get(&shape).cloned();
    match known {
        Some(Some(template)) => (Ok(Found::Template(template, literals)), Lookup::Hit),
        Some(None) => (fresh(statement).map(Found::Translated), Lookup::Fresh),
        None => {
            let real = match fresh(statement) {
                Ok(real) => real,
                Err(e) => return (Err(e), Lookup::Fresh),
            };
            let template = fresh(&SqlText::new(&shape))
                .ok()
                .and_then(|t| Template::from_translation(t, literals.len()))
                .filter(|template| template.fill(&literals) == real)
                .map(|template| Arc::new(template.with_lifted(&shape, literals.len())));
            lock().insert(shape, template.clone());
            match template {
                Some(template) => (Ok(Found::Template(template, literals)), Lookup::Stored),
                None => (Ok(Found::Translated(real)), Lookup::Fresh),
            }
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

/// Which literal a digit run stands for, if it is one of `count` sentinels.
fn sentinel_index(run: &str, count: usize) -> Option<usize> {
    run.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_sub(SENTINEL_BASE))
        .filter(|offset| offset % SENTINEL_STEP == 0)
        .and_then(|offset| usize::try_from(offset / SENTINEL_STEP).ok())
        .filter(|index| *index < count)
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
            lifted: Vec::new(),
        })
    }

    /// Finds the literals that may be lifted: a one-statement translation's literals in value
    /// positions of the (sentinel) `shape`, unless the translation put one inside quotes.
    fn with_lifted(mut self, shape: &str, literals: usize) -> Template {
        let [pieces] = self.statements.as_slice() else {
            return self;
        };
        let Some(parsed) = Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(shape)
            .and_then(|mut parser| parser.parse_statements())
            .ok()
        else {
            return self;
        };
        let [statement] = parsed.as_slice() else {
            return self;
        };
        let quoted = quoted_literals(pieces);
        self.lifted = super::lift::value_literals(statement, &|run| sentinel_index(run, literals))
            .into_iter()
            .filter(|index| !quoted.contains(index))
            .collect();
        self
    }

    /// The translation with the lifted literals as parameters `?1`, `?2`, ..., and their
    /// values.
    fn fill_lifted(&self, literals: &[&str]) -> (Translation, Vec<i64>) {
        let values: Option<Vec<i64>> = self
            .lifted
            .iter()
            .map(|i| literals.get(*i).and_then(|text| text.parse().ok()))
            .collect();
        let (Some(values), [pieces]) = (values, self.statements.as_slice()) else {
            return (self.fill(literals), Vec::new());
        };
        let sql = render(pieces, |sql, i| {
            match self.lifted.iter().position(|l| *l == i) {
                Some(position) => {
                    sql.push('?');
                    sql.push_str(&(position + 1).to_string());
                }
                None => sql.push_str(literals.get(i).copied().unwrap_or("")),
            }
        });
        let translation = Translation {
            statements: vec![sql],
            tag: self.tag.clone(),
            column_decltypes: self.column_decltypes.clone(),
        };
        (translation, values)
    }

    fn fill(&self, literals: &[&str]) -> Translation {
        let statements = self
            .statements
            .iter()
            // Indexes were checked against the literal count when stored.
            .map(|pieces| {
                render(pieces, |sql, i| {
                    sql.push_str(literals.get(i).copied().unwrap_or(""))
                })
            })
            .collect();
        Translation {
            statements,
            tag: self.tag.clone(),
            column_decltypes: self.column_decltypes.clone(),
        }
    }
}

/// One statement's text from its pieces, `literal` writing each literal's place.
fn render(pieces: &[Piece], mut literal: impl FnMut(&mut String, usize)) -> String {
    let mut sql = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => sql.push_str(text),
            Piece::Literal(i) => literal(&mut sql, *i),
        }
    }
    sql
}

/// The literals (by index) of which some copy sits inside a quoted string or name of the
/// translation: those are text there, never a parameter.
fn quoted_literals(pieces: &[Piece]) -> Vec<usize> {
    let mut quote: Option<char> = None;
    let mut quoted = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => {
                for c in text.chars() {
                    match quote {
                        // A doubled quote closes and reopens: the state comes out right.
                        Some(open) if c == open => quote = None,
                        None if c == '\'' || c == '"' => quote = Some(c),
                        _ => {}
                    }
                }
            }
            Piece::Literal(i) if quote.is_some() => quoted.push(*i),
            Piece::Literal(_) => {}
        }
    }
    quoted
}

/// The translation `sql` cut at its sentinels, and the literals it holds marked in `seen`.
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
        let index = sentinel_index(run, seen.len())?;
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

    fn lifted(sql: &str) -> (Translation, Vec<i64>) {
        translate_lifting(&SqlText::new(sql), super::super::translate_uncached)
            .0
            .expect("translates")
    }

    #[test]
    fn literals_in_value_positions_become_parameters_of_one_sqlite_text() {
        // Once to store the shape, then twice from it: one SQLite text, the values apart.
        lifted("SELECT abalance FROM lift_a WHERE aid = 1");
        let (one, one_values) = lifted("SELECT abalance FROM lift_a WHERE aid = 1234");
        let (two, two_values) = lifted("SELECT abalance FROM lift_a WHERE aid = 98765");
        assert_eq!(one.statements, two.statements);
        assert_eq!(
            one.statements,
            ["SELECT abalance FROM lift_a WHERE aid = ?1"]
        );
        assert_eq!((one_values, two_values), (vec![1234], vec![98765]));

        lifted("UPDATE lift_a SET abalance = abalance + -1 WHERE aid = 2");
        let (update, values) =
            lifted("UPDATE lift_a SET abalance = abalance + -4321 WHERE aid = 17");
        assert_eq!(
            update.statements,
            ["UPDATE lift_a SET abalance = abalance + -?1 WHERE aid = ?2"]
        );
        assert_eq!(values, [4321, 17]);
    }

    #[test]
    fn literals_whose_meaning_a_parameter_would_change_stay_in_the_text() {
        // ORDER BY positions and result columns keep their literals; the WHERE one is lifted.
        lifted("SELECT a, 5 FROM lift_b WHERE c = 6 ORDER BY 1 LIMIT 7");
        let (query, values) = lifted("SELECT a, 8 FROM lift_b WHERE c = 9 ORDER BY 2 LIMIT 3");
        assert_eq!(
            query.statements,
            ["SELECT a, 8 AS \"?column?\" FROM lift_b WHERE c = ?1 ORDER BY 2 NULLS LAST LIMIT ?2"]
        );
        assert_eq!(values, [9, 3]);
        // A statement with parameters of its own is never lifted.
        lifted("SELECT a FROM lift_b WHERE c = $1 AND d = 1");
        let (own, values) = lifted("SELECT a FROM lift_b WHERE c = $1 AND d = 2");
        assert_eq!(
            own.statements,
            ["SELECT a FROM lift_b WHERE c = ?1 AND d = 2"]
        );
        assert!(values.is_empty());
    }

    #[test]
    fn a_literal_the_translation_quotes_stays_text() {
        let pieces = [
            Piece::Text("SELECT 'a".into()),
            Piece::Literal(0),
            Piece::Text("' || \"b\"\"".into()),
            Piece::Literal(1),
            Piece::Text("\" FROM t WHERE x = ".into()),
            Piece::Literal(2),
        ];
        assert_eq!(quoted_literals(&pieces), [0, 1]);
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
