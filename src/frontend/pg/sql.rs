//! SQL text as the PostgreSQL front end sees it, before SQLite does: a PostgreSQL-aware lexer,
//! and the pure functions built on it — splitting a simple-query string into statements,
//! classifying each one (read, write, session command), rewriting `$N` placeholders to SQLite's
//! `?N`, and guessing parameter types from the columns they are compared with or inserted into.
//!
//! The lexer knows PostgreSQL's quoting (`'...'` with `''`, `E'...'` with backslashes, `"..."`,
//! `$tag$...$tag$`, nested `/* */` comments), so a `;` or `$1` inside a string or comment is
//! never mistaken for syntax. It does not judge syntax: SQLite does that.

/// What one token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or an unquoted identifier.
    Word,
    /// A `"quoted"` identifier.
    QuotedIdent,
    /// A string literal of any quoting style.
    String,
    Number,
    /// `$N`: a positional parameter.
    Param(u32),
    /// An operator or punctuation (`(`, `,`, `=`, `<=`, `::`, ...).
    Punct,
    /// `;`
    Semicolon,
}

/// A token and where it is in the text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        &sql[self.start..self.end]
    }

    /// Whether this is the keyword `word` (case-insensitive).
    pub fn is_word(&self, sql: &str, word: &str) -> bool {
        self.kind == TokenKind::Word && self.text(sql).eq_ignore_ascii_case(word)
    }

    pub fn is_punct(&self, sql: &str, punct: &str) -> bool {
        self.kind == TokenKind::Punct && self.text(sql) == punct
    }

    /// The identifier this token names, unquoted (`None` if it is not an identifier).
    pub fn identifier(&self, sql: &str) -> Option<String> {
        match self.kind {
            TokenKind::Word => Some(self.text(sql).to_owned()),
            TokenKind::QuotedIdent => {
                let text = self.text(sql);
                let inner = text
                    .strip_prefix('"')
                    .map(|t| t.strip_suffix('"').unwrap_or(t))
                    .unwrap_or(text);
                Some(inner.replace("\"\"", "\""))
            }
            _ => None,
        }
    }
}

/// Splits `sql` into tokens. Comments and whitespace are dropped; an unterminated string or
/// comment runs to the end of the text (SQLite then reports it).
pub fn tokenize(sql: &str) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n")
                    .map(|p| p + 1)
                    .unwrap_or(bytes.len());
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b'\'' => {
                i = skip_quoted(bytes, i, b'\'', false);
                TokenKind::String
            }
            b'E' | b'e' if bytes.get(i + 1) == Some(&b'\'') => {
                i = skip_quoted(bytes, i + 1, b'\'', true);
                TokenKind::String
            }
            b'B' | b'b' | b'X' | b'x' | b'N' | b'n' if bytes.get(i + 1) == Some(&b'\'') => {
                i = skip_quoted(bytes, i + 1, b'\'', false);
                TokenKind::String
            }
            b'"' => {
                i = skip_quoted(bytes, i, b'"', false);
                TokenKind::QuotedIdent
            }
            b'$' => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    match sql[start + 1..i].parse::<u32>() {
                        Ok(n) => TokenKind::Param(n),
                        Err(_) => TokenKind::Punct,
                    }
                } else if let Some(end) = dollar_quote_end(bytes, i) {
                    i = end;
                    TokenKind::String
                } else {
                    i += 1;
                    TokenKind::Punct
                }
            }
            b'0'..=b'9' => {
                i = skip_number(bytes, i);
                TokenKind::Number
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = skip_number(bytes, i);
                TokenKind::Number
            }
            b';' => {
                i += 1;
                TokenKind::Semicolon
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                TokenKind::Word
            }
            _ => {
                const TWO: [&[u8]; 7] = [b"<=", b">=", b"<>", b"!=", b"::", b"||", b"=="];
                i += if TWO.iter().any(|op| bytes[i..].starts_with(op)) {
                    2
                } else {
                    // One character, whole (the text may hold any UTF-8 in operators).
                    sql[i..].chars().next().map(char::len_utf8).unwrap_or(1)
                };
                TokenKind::Punct
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// PostgreSQL block comments nest.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Skips a quoted run starting at the opening quote; a doubled quote is an escaped quote, and
/// with `backslash` a backslash escapes the next byte.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$`: returns the end of the whole string if `start` opens one.
fn dollar_quote_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    if bytes.get(i) != Some(&b'$') {
        return None;
    }
    let tag = &bytes[start..=i];
    Some(
        find_from(bytes, i + 1, tag)
            .map(|p| p + tag.len())
            .unwrap_or(bytes.len()),
    )
}

fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
    {
        let exponent = matches!(bytes[i], b'e' | b'E');
        i += 1;
        if exponent && i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
            i += 1;
        }
    }
    i
}

/// One statement of a query string: its text (without the `;`) and its tokens, with offsets
/// relative to that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlText {
    pub sql: String,
    pub tokens: Vec<Token>,
}

impl SqlText {
    /// One statement's text; trailing semicolons (outside strings and comments) are dropped.
    pub fn new(sql: &str) -> SqlText {
        let mut sql = sql.trim();
        let mut tokens = tokenize(sql);
        while let Some(last) = tokens.last()
            && last.kind == TokenKind::Semicolon
        {
            sql = sql[..last.start].trim_end();
            tokens.pop();
        }
        SqlText {
            sql: sql.to_owned(),
            tokens,
        }
    }

    pub fn word(&self, index: usize) -> Option<String> {
        self.tokens
            .get(index)
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text(&self.sql).to_ascii_uppercase())
    }

    /// The identifier at token `index` as PostgreSQL resolves it: unquoted names fold to lower
    /// case, quoted ones keep theirs. `None` if the token is not an identifier.
    pub fn folded_identifier(&self, index: usize) -> Option<String> {
        let token = self.tokens.get(index)?;
        let name = token.identifier(&self.sql)?;
        Some(if token.kind == TokenKind::Word {
            name.to_lowercase()
        } else {
            name
        })
    }

    pub fn is_word(&self, index: usize, word: &str) -> bool {
        self.tokens
            .get(index)
            .is_some_and(|t| t.is_word(&self.sql, word))
    }
}

/// Splits a simple-query string at top-level semicolons; empty statements are dropped.
pub fn split_statements(query: &str) -> Vec<SqlText> {
    let mut statements = Vec::new();
    let mut from = 0;
    for token in tokenize(query) {
        if token.kind == TokenKind::Semicolon {
            statements.push(&query[from..token.start]);
            from = token.end;
        }
    }
    statements.push(&query[from..]);
    statements
        .into_iter()
        .filter(|s| !tokenize(s).is_empty())
        .map(SqlText::new)
        .collect()
}

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Read-only: served by `Dispatcher::query` at the session's consistency.
    Read,
    /// Anything else SQLite runs: one transaction on the leader via `Dispatcher::execute`.
    Write,
}

/// Whether a statement takes row locks (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`,
/// `FOR KEY SHARE`), which SQLite has no words for.
pub fn locks_rows(statement: &SqlText) -> bool {
    let words: Vec<&str> = statement
        .tokens
        .iter()
        .map(|t| match t.kind {
            TokenKind::Word => t.text(&statement.sql),
            _ => "",
        })
        .collect();
    words.windows(2).any(|pair| {
        pair[0].eq_ignore_ascii_case("FOR")
            && ["UPDATE", "SHARE", "NO", "KEY"]
                .iter()
                .any(|w| pair[1].eq_ignore_ascii_case(w))
    })
}

/// Decides a statement's route from its words: `SELECT`, `VALUES`, `EXPLAIN`, and `WITH ...`
/// whose main statement is a `SELECT` read; everything else writes. (For prepared statements
/// SQLite's own `sqlite3_stmt_readonly` decides instead.)
pub fn route(statement: &SqlText) -> Route {
    let Some(first) = statement.tokens.first() else {
        return Route::Read;
    };
    if first.is_punct(&statement.sql, "(") {
        return Route::Read;
    }
    match statement.word(0).as_deref() {
        Some("SELECT" | "VALUES" | "EXPLAIN" | "TABLE") => Route::Read,
        Some("WITH") => {
            // SQLite has no data-modifying CTEs: a write keyword at depth 0 is the main
            // statement.
            let mut depth = 0i32;
            for token in &statement.tokens {
                let text = token.text(&statement.sql);
                match token.kind {
                    TokenKind::Punct if text == "(" => depth += 1,
                    TokenKind::Punct if text == ")" => depth -= 1,
                    TokenKind::Word
                        if depth == 0
                            && ["INSERT", "UPDATE", "DELETE", "REPLACE"]
                                .iter()
                                .any(|w| text.eq_ignore_ascii_case(w)) =>
                    {
                        return Route::Write;
                    }
                    _ => {}
                }
            }
            Route::Read
        }
        _ => Route::Write,
    }
}

/// The text SQLite runs: PostgreSQL's `$N` placeholders become `?N` (SQLite reads `$1` as a
/// *named* parameter numbered by first appearance, so `SELECT $2, $1` would bind wrongly).
/// Returns the text and the highest parameter number.
pub fn to_sqlite(statement: &SqlText) -> (String, u32) {
    let mut out = String::with_capacity(statement.sql.len());
    let mut from = 0;
    let mut highest = 0;
    for token in &statement.tokens {
        if let TokenKind::Param(n) = token.kind {
            out.push_str(&statement.sql[from..token.start]);
            out.push('?');
            out.push_str(&n.to_string());
            from = token.end;
            highest = highest.max(n);
        }
    }
    out.push_str(&statement.sql[from..]);
    (out, highest)
}

/// Tables the statement names after `FROM`, `JOIN`, `UPDATE` or `INTO`, in order, deduplicated.
pub fn referenced_tables(statement: &SqlText) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    let tokens = &statement.tokens;
    for (i, token) in tokens.iter().enumerate() {
        let introduces = ["FROM", "JOIN", "UPDATE", "INTO"]
            .iter()
            .any(|w| token.is_word(&statement.sql, w));
        if !introduces {
            continue;
        }
        let Some(mut name) = tokens.get(i + 1).and_then(|t| t.identifier(&statement.sql)) else {
            continue;
        };
        // schema.table: keep the table.
        if tokens
            .get(i + 2)
            .is_some_and(|t| t.is_punct(&statement.sql, "."))
            && let Some(table) = tokens.get(i + 3).and_then(|t| t.identifier(&statement.sql))
        {
            name = table;
        }
        if !tables.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
            tables.push(name);
        }
    }
    tables
}

/// Table columns known to the inference: (table, [(column, declared type)]).
pub type TableColumns = [(String, Vec<(String, String)>)];

/// Guesses each parameter's declared type (index `n - 1` for `$n`) from its context:
/// `INSERT INTO t (cols) VALUES ($1, ...)` takes the column's type; `col <op> $1`,
/// `$1 <op> col`, `col IN ($1, ...)`, `col BETWEEN $1 AND $2` take `col`'s; `LIMIT`/`OFFSET`
/// take `BIGINT`; `LIKE` takes `TEXT`. `None` where nothing tells.
pub fn infer_parameter_decltypes(
    statement: &SqlText,
    count: usize,
    tables: &TableColumns,
) -> Vec<Option<String>> {
    let mut types: Vec<Option<String>> = vec![None; count];
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let column_type = |qualifier: Option<String>, column: &str| -> Option<String> {
        let find = |cols: &Vec<(String, String)>| {
            cols.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(column))
                .map(|(_, ty)| ty.clone())
        };
        if let Some(q) = qualifier
            && let Some((_, cols)) = tables.iter().find(|(t, _)| t.eq_ignore_ascii_case(&q))
            && let Some(ty) = find(cols)
        {
            return Some(ty);
        }
        tables.iter().find_map(|(_, cols)| find(cols))
    };
    let mut set = |n: u32, ty: Option<String>| {
        if let Some(slot) = (n as usize).checked_sub(1).and_then(|i| types.get_mut(i))
            && slot.is_none()
        {
            *slot = ty;
        }
    };

    if statement.is_word(0, "INSERT") || statement.is_word(0, "REPLACE") {
        for (n, ty) in insert_value_types(statement, tables) {
            set(n, Some(ty));
        }
    }

    // The column named by the identifier ending at token `end` (`col` or `t.col`).
    let column_ending_at = |end: usize| -> Option<String> {
        let name = tokens.get(end)?.identifier(sql)?;
        let qualifier = end
            .checked_sub(2)
            .filter(|&q| tokens[q + 1].is_punct(sql, "."))
            .and_then(|q| tokens[q].identifier(sql));
        column_type(qualifier, &name)
    };
    // The column named by the identifier starting at token `start`.
    let column_starting_at = |start: usize| -> Option<String> {
        let first = tokens.get(start)?.identifier(sql)?;
        if tokens.get(start + 1).is_some_and(|t| t.is_punct(sql, "."))
            && let Some(column) = tokens.get(start + 2).and_then(|t| t.identifier(sql))
        {
            return column_type(Some(first), &column);
        }
        column_type(None, &first)
    };
    const COMPARISONS: [&str; 8] = ["=", "==", "<>", "!=", "<", "<=", ">", ">="];
    let is_comparison =
        |t: &Token| t.kind == TokenKind::Punct && COMPARISONS.contains(&t.text(sql));

    for (i, token) in tokens.iter().enumerate() {
        let TokenKind::Param(n) = token.kind else {
            continue;
        };
        let before = |k: usize| i.checked_sub(k).map(|j| &tokens[j]);
        let after = tokens.get(i + 1);
        if let Some(op) = before(1) {
            if is_comparison(op) {
                set(n, i.checked_sub(2).and_then(column_ending_at));
            } else if op.is_word(sql, "LIMIT") || op.is_word(sql, "OFFSET") {
                set(n, Some("BIGINT".into()));
            } else if op.is_word(sql, "LIKE") || op.is_word(sql, "GLOB") {
                set(n, Some("TEXT".into()));
            } else if op.is_word(sql, "BETWEEN") {
                set(n, i.checked_sub(2).and_then(column_ending_at));
            } else if op.is_word(sql, "AND") && before(3).is_some_and(|t| t.is_word(sql, "BETWEEN"))
            {
                set(n, i.checked_sub(4).and_then(column_ending_at));
            } else if op.is_punct(sql, "(") || op.is_punct(sql, ",") {
                // col IN ($1, $2, ...): walk back to the opening parenthesis.
                let mut j = i;
                while j > 0
                    && !tokens[j - 1].is_punct(sql, "(")
                    && matches!(tokens[j - 1].kind, TokenKind::Param(_) | TokenKind::Punct)
                    && !tokens[j - 1].is_punct(sql, ")")
                {
                    j -= 1;
                }
                if j >= 3 && tokens[j - 1].is_punct(sql, "(") && tokens[j - 2].is_word(sql, "IN") {
                    set(n, column_ending_at(j - 3));
                }
            }
        }
        if let Some(op) = after
            && is_comparison(op)
        {
            set(n, column_starting_at(i + 2));
        }
    }
    types
}

/// `INSERT INTO t [(c1, ...)] VALUES (...), (...)`: the declared type for each parameter that
/// stands alone as a value.
fn insert_value_types(statement: &SqlText, tables: &TableColumns) -> Vec<(u32, String)> {
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let Some(into) = tokens.iter().position(|t| t.is_word(sql, "INTO")) else {
        return Vec::new();
    };
    let mut i = into + 1;
    let Some(mut table) = tokens.get(i).and_then(|t| t.identifier(sql)) else {
        return Vec::new();
    };
    i += 1;
    if tokens.get(i).is_some_and(|t| t.is_punct(sql, "."))
        && let Some(name) = tokens.get(i + 1).and_then(|t| t.identifier(sql))
    {
        table = name;
        i += 2;
    }
    let Some((_, table_columns)) = tables.iter().find(|(t, _)| t.eq_ignore_ascii_case(&table))
    else {
        return Vec::new();
    };
    if tokens.get(i).is_some_and(|t| t.is_word(sql, "AS")) {
        i += 2;
    }
    let mut columns: Vec<String> = Vec::new();
    if tokens.get(i).is_some_and(|t| t.is_punct(sql, "(")) {
        i += 1;
        while let Some(t) = tokens.get(i) {
            if t.is_punct(sql, ")") {
                i += 1;
                break;
            }
            if let Some(name) = t.identifier(sql) {
                columns.push(name);
            }
            i += 1;
        }
    } else {
        columns = table_columns.iter().map(|(c, _)| c.clone()).collect();
    }
    if !tokens.get(i).is_some_and(|t| t.is_word(sql, "VALUES")) {
        return Vec::new();
    }
    i += 1;
    let type_of = |column: &str| {
        table_columns
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(column))
            .map(|(_, ty)| ty.clone())
    };
    let mut found = Vec::new();
    // Walk the tuples: depth 1 is inside a tuple; a value is the run between commas.
    let mut depth = 0;
    let mut position = 0;
    let mut value: Vec<&Token> = Vec::new();
    while let Some(t) = tokens.get(i) {
        let text = t.text(sql);
        let is = |p: &str| t.kind == TokenKind::Punct && text == p;
        if is("(") {
            depth += 1;
            if depth == 1 {
                position = 0;
                value.clear();
                i += 1;
                continue;
            }
        } else if is(")") {
            depth -= 1;
            if depth == 0 {
                record(&value, position, &columns, &type_of, &mut found);
                value.clear();
                i += 1;
                continue;
            }
        } else if is(",") && depth == 1 {
            record(&value, position, &columns, &type_of, &mut found);
            value.clear();
            position += 1;
            i += 1;
            continue;
        } else if depth == 0 && t.kind == TokenKind::Word {
            break; // ON CONFLICT, RETURNING, ...
        }
        if depth >= 1 {
            value.push(t);
        }
        i += 1;
    }
    found
}

fn record(
    value: &[&Token],
    position: usize,
    columns: &[String],
    type_of: &impl Fn(&str) -> Option<String>,
    found: &mut Vec<(u32, String)>,
) {
    if let [token] = value
        && let TokenKind::Param(n) = token.kind
        && let Some(column) = columns.get(position)
        && let Some(ty) = type_of(column)
    {
        found.push((n, ty));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(query: &str) -> Vec<String> {
        split_statements(query).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(
            texts("SELECT 'a;b'; SELECT \"x;\" FROM t -- c;\n; /* ; /* ; */ */ SELECT $$;$$;;"),
            vec![
                "SELECT 'a;b'",
                "SELECT \"x;\" FROM t -- c;",
                "/* ; /* ; */ */ SELECT $$;$$"
            ]
        );
        assert_eq!(texts("  ;  ; -- only a comment"), Vec::<String>::new());
        assert_eq!(
            texts("SELECT E'\\';' ; SELECT 1"),
            vec!["SELECT E'\\';'", "SELECT 1"]
        );
        assert_eq!(
            texts("SELECT 'unterminated; SELECT 2"),
            vec!["SELECT 'unterminated; SELECT 2"]
        );
    }

    #[test]
    fn routes_reads_and_writes() {
        let r = |s: &str| route(&SqlText::new(s));
        assert_eq!(r("select 1"), Route::Read);
        assert_eq!(r("/* c */ VALUES (1)"), Route::Read);
        assert_eq!(r("(SELECT 1) UNION SELECT 2"), Route::Read);
        assert_eq!(r("WITH x AS (SELECT 1) SELECT * FROM x"), Route::Read);
        assert_eq!(
            r("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"),
            Route::Write
        );
        assert_eq!(
            r("WITH x AS (SELECT replace('a','b','c')) SELECT * FROM x"),
            Route::Read
        );
        assert_eq!(r("insert into t values (1)"), Route::Write);
        assert_eq!(r("CREATE TABLE t(a)"), Route::Write);
    }

    #[test]
    fn rewrites_placeholders_outside_strings() {
        let (sql, n) = to_sqlite(&SqlText::new("SELECT $2, '$1', $1 FROM t WHERE a = $10"));
        assert_eq!(sql, "SELECT ?2, '$1', ?1 FROM t WHERE a = ?10");
        assert_eq!(n, 10);
    }

    #[test]
    fn infers_parameter_types_from_columns() {
        let tables = vec![
            (
                "t".to_owned(),
                vec![
                    ("id".to_owned(), "BIGINT".to_owned()),
                    ("name".to_owned(), "TEXT".to_owned()),
                    ("score".to_owned(), "DOUBLE PRECISION".to_owned()),
                ],
            ),
            (
                "u".to_owned(),
                vec![("flag".to_owned(), "BOOLEAN".to_owned())],
            ),
        ];
        let infer = |sql: &str, n: usize| {
            infer_parameter_decltypes(&SqlText::new(sql), n, &tables)
                .into_iter()
                .map(|t| t.unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            infer("INSERT INTO t (name, id) VALUES ($1, $2), ($3, 7)", 3),
            vec!["TEXT", "BIGINT", "TEXT"]
        );
        assert_eq!(
            infer("INSERT INTO t VALUES ($1, $2, $3) RETURNING id", 3),
            vec!["BIGINT", "TEXT", "DOUBLE PRECISION"]
        );
        assert_eq!(
            infer(
                "UPDATE t SET score = $1 WHERE t.id >= $2 AND $3 = name LIMIT $4",
                4
            ),
            vec!["DOUBLE PRECISION", "BIGINT", "TEXT", "BIGINT"]
        );
        assert_eq!(
            infer(
                "SELECT * FROM t JOIN u ON 1 WHERE id IN ($1, $2) AND flag = $3 AND name LIKE $4 AND score BETWEEN $5 AND $6",
                6
            ),
            vec![
                "BIGINT",
                "BIGINT",
                "BOOLEAN",
                "TEXT",
                "DOUBLE PRECISION",
                "DOUBLE PRECISION"
            ]
        );
        assert_eq!(infer("SELECT $1", 1), vec![""]);
        assert_eq!(
            referenced_tables(&SqlText::new("select * from main.t join \"u\" on 1")),
            vec!["t", "u"]
        );
    }
}
