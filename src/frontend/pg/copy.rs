//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT` in PostgreSQL's text and CSV formats: the
//! statement's parser, and the pure functions that turn copy data into rows and rows into copy
//! data. Running them (inserting the rows as one transaction on the leader, reading the rows
//! at the session's consistency) is the session's job.
//!
//! Text format: one row per line, columns separated by the delimiter (tab), `\N` for NULL,
//! backslash escapes (`\t`, `\n`, `\\`, octal `\123`, hex `\x41`, ...), an optional `\.` end
//! line. CSV: fields quoted with `"` when needed (a quoted field may span lines, `""` inside is
//! a quote), an unquoted empty field is NULL, an optional header line.

use crate::frontend::pg::error::{PgError, error, not_supported, syntax_error_at};
use crate::frontend::pg::sql::{SqlText, TokenKind};

/// Largest COPY FROM STDIN data accepted in one statement (it becomes one transaction).
pub const MAX_COPY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
}

/// The options that shape copy data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: char,
    /// The spelling of NULL.
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl CopyOptions {
    fn defaults() -> CopyOptions {
        CopyOptions {
            format: CopyFormat::Text,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }
}

/// Where the rows come from or go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A table, with an optional column list.
    Table {
        table: String,
        columns: Option<Vec<String>>,
    },
    /// `COPY (query) TO STDOUT`.
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyCommand {
    /// `COPY table [(columns)] FROM STDIN`.
    In {
        table: String,
        columns: Option<Vec<String>>,
        options: CopyOptions,
    },
    /// `COPY table|(query) TO STDOUT`.
    Out {
        source: CopySource,
        options: CopyOptions,
    },
}

/// Parses a `COPY` statement; `None` if `statement` is not one.
pub fn parse(statement: &SqlText) -> Option<Result<CopyCommand, PgError>> {
    if statement.word(0).as_deref() != Some("COPY") {
        return None;
    }
    Some(parse_copy(statement))
}

fn parse_copy(statement: &SqlText) -> Result<CopyCommand, PgError> {
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let mut at = 1;
    let source = if tokens.get(at).is_some_and(|t| t.is_punct(sql, "(")) {
        let close = matching_paren(statement, at).ok_or_else(|| syntax_error_at(statement, at))?;
        let query = sql[tokens[at].end..tokens[close].start].trim().to_owned();
        at = close + 1;
        CopySource::Query(query)
    } else {
        let mut table = identifier(statement, at)?;
        at += 1;
        if tokens.get(at).is_some_and(|t| t.is_punct(sql, ".")) {
            table = identifier(statement, at + 1)?; // schema.table: the table
            at += 2;
        }
        let columns = if tokens.get(at).is_some_and(|t| t.is_punct(sql, "(")) {
            let close =
                matching_paren(statement, at).ok_or_else(|| syntax_error_at(statement, at))?;
            let mut columns = Vec::new();
            let mut i = at + 1;
            while i < close {
                columns.push(identifier(statement, i)?);
                i += 1;
                if i < close && !tokens[i].is_punct(sql, ",") {
                    return Err(syntax_error_at(statement, i));
                }
                i += 1;
            }
            at = close + 1;
            Some(columns)
        } else {
            None
        };
        CopySource::Table { table, columns }
    };
    let direction = statement
        .word(at)
        .ok_or_else(|| syntax_error_at(statement, at))?;
    let target = statement.word(at + 1);
    let target_is_client = matches!(target.as_deref(), Some("STDIN" | "STDOUT"));
    if !target_is_client {
        return Err(not_supported(
            "COPY to or from a file or program on the server (use STDIN/STDOUT, e.g. psql's \\copy)",
        ));
    }
    let options = parse_options(statement, at + 2)?;
    match (direction.as_str(), target.as_deref(), source) {
        ("FROM", Some("STDIN"), CopySource::Table { table, columns }) => Ok(CopyCommand::In {
            table,
            columns,
            options,
        }),
        ("FROM", Some("STDIN"), CopySource::Query(_)) => Err(error(
            "42601",
            "COPY (query) is only allowed with TO STDOUT",
        )),
        ("TO", Some("STDOUT"), source) => Ok(CopyCommand::Out { source, options }),
        _ => Err(syntax_error_at(statement, at)),
    }
}

/// Options after `FROM STDIN` / `TO STDOUT`: `[WITH] (name value, ...)` or the pre-9.0 words
/// (`CSV`, `HEADER`, `DELIMITER 'x'`, `NULL 'x'`, `QUOTE 'x'`, `ESCAPE 'x'`, `BINARY`).
fn parse_options(statement: &SqlText, mut at: usize) -> Result<CopyOptions, PgError> {
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let mut options = CopyOptions::defaults();
    let mut quote_set = false;
    let mut escape_set = false;
    let mut null_set = false;
    let mut delimiter_set = false;
    if statement.is_word(at, "WITH") {
        at += 1;
    }
    let parenthesized = tokens.get(at).is_some_and(|t| t.is_punct(sql, "("));
    let end = if parenthesized {
        let close = matching_paren(statement, at).ok_or_else(|| syntax_error_at(statement, at))?;
        at += 1;
        close
    } else {
        tokens.len()
    };
    while at < end {
        if tokens[at].is_punct(sql, ",") {
            at += 1;
            continue;
        }
        let name = statement
            .word(at)
            .ok_or_else(|| syntax_error_at(statement, at))?;
        at += 1;
        let value = |at: &mut usize| option_value(statement, at, end, parenthesized);
        match name.as_str() {
            "FORMAT" => match value(&mut at).map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("csv") => options.format = CopyFormat::Csv,
                Some("text") => options.format = CopyFormat::Text,
                Some("binary") => return Err(not_supported("COPY in binary format")),
                _ => return Err(error("22023", "COPY format must be text or csv")),
            },
            "CSV" => options.format = CopyFormat::Csv,
            "BINARY" => return Err(not_supported("COPY in binary format")),
            "HEADER" => {
                // `HEADER` alone, or HEADER true/false/on/off/1/0 in the parenthesized form.
                options.header = if parenthesized && at < end && !tokens[at].is_punct(sql, ",") {
                    let v = value(&mut at).unwrap_or_default().to_ascii_lowercase();
                    match v.as_str() {
                        "true" | "on" | "1" => true,
                        "false" | "off" | "0" => false,
                        "match" => return Err(not_supported("COPY HEADER MATCH")),
                        _ => return Err(error("22023", format!("invalid HEADER value {v}"))),
                    }
                } else {
                    true
                };
            }
            "FREEZE" => {
                if parenthesized && at < end && !tokens[at].is_punct(sql, ",") {
                    value(&mut at);
                }
            }
            "DELIMITER" | "NULL" | "QUOTE" | "ESCAPE" | "ENCODING" => {
                let v = value(&mut at).ok_or_else(|| syntax_error_at(statement, at))?;
                let single = || -> Result<char, PgError> {
                    let mut chars = v.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => Ok(c),
                        _ => Err(error(
                            "0A000",
                            format!("COPY {name} must be a single one-byte character"),
                        )),
                    }
                };
                match name.as_str() {
                    "DELIMITER" => {
                        options.delimiter = single()?;
                        delimiter_set = true;
                    }
                    "NULL" => {
                        options.null = v.clone();
                        null_set = true;
                    }
                    "QUOTE" => {
                        options.quote = single()?;
                        quote_set = true;
                    }
                    "ESCAPE" => {
                        options.escape = single()?;
                        escape_set = true;
                    }
                    _ if v.eq_ignore_ascii_case("utf8") || v.eq_ignore_ascii_case("utf-8") => {}
                    _ => return Err(not_supported(format!("COPY ENCODING {v}"))),
                }
            }
            "FORCE_QUOTE" | "FORCE_NOT_NULL" | "FORCE_NULL" | "FORCE" => {
                return Err(not_supported(format!("COPY {name}")));
            }
            _ => return Err(syntax_error_at(statement, at - 1)),
        }
    }
    if options.format == CopyFormat::Csv {
        if !delimiter_set {
            options.delimiter = ',';
        }
        if !null_set {
            options.null = String::new();
        }
        if !escape_set {
            options.escape = options.quote;
        }
    } else if quote_set || escape_set || options.header {
        return Err(not_supported("QUOTE, ESCAPE and HEADER outside CSV format"));
    }
    if options.delimiter == '\n' || options.delimiter == '\r' || options.delimiter == '\\' {
        return Err(error(
            "22023",
            "COPY delimiter cannot be newline, carriage return or backslash",
        ));
    }
    Ok(options)
}

/// An option's value at `at` (after an optional `AS` in the old syntax): a string, a word or a
/// number.
fn option_value(
    statement: &SqlText,
    at: &mut usize,
    end: usize,
    parenthesized: bool,
) -> Option<String> {
    if !parenthesized && statement.is_word(*at, "AS") {
        *at += 1;
    }
    let token = statement.tokens.get(*at).filter(|_| *at < end)?;
    let text = match token.kind {
        TokenKind::String => string_literal(token.text(&statement.sql)),
        TokenKind::Word | TokenKind::Number => token.text(&statement.sql).to_owned(),
        _ => return None,
    };
    *at += 1;
    Some(text)
}

fn string_literal(text: &str) -> String {
    let inner = text
        .strip_prefix(['E', 'e'])
        .unwrap_or(text)
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(text);
    let unescaped = inner.replace("''", "'");
    if text.starts_with(['E', 'e']) {
        unescape_text(&unescaped)
    } else {
        unescaped
    }
}

fn identifier(statement: &SqlText, at: usize) -> Result<String, PgError> {
    statement
        .folded_identifier(at)
        .ok_or_else(|| syntax_error_at(statement, at))
}

fn matching_paren(statement: &SqlText, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, token) in statement.tokens.iter().enumerate().skip(open) {
        if token.is_punct(&statement.sql, "(") {
            depth += 1;
        } else if token.is_punct(&statement.sql, ")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// A row of COPY data: each column's text, or `None` for NULL.
pub type CopyRow = Vec<Option<String>>;

/// Parses COPY FROM data into rows of exactly `columns` fields.
pub fn parse_rows(
    data: &[u8],
    options: &CopyOptions,
    columns: usize,
) -> Result<Vec<CopyRow>, PgError> {
    let text = std::str::from_utf8(data).map_err(|e| {
        error(
            "22021",
            format!("invalid byte sequence for encoding \"UTF8\": {e}"),
        )
    })?;
    let mut rows = match options.format {
        CopyFormat::Text => parse_text(text, options),
        CopyFormat::Csv => parse_csv(text, options)?,
    };
    if options.header && !rows.is_empty() {
        rows.remove(0);
    }
    for (line, row) in rows.iter().enumerate() {
        if row.len() != columns {
            let what = if row.len() < columns {
                "missing data for a column"
            } else {
                "extra data after last expected column"
            };
            return Err(error(
                "22P04",
                format!(
                    "{what} (COPY line {}: {} fields, {columns} expected)",
                    line + 1,
                    row.len()
                ),
            ));
        }
    }
    Ok(rows)
}

fn parse_text(text: &str, options: &CopyOptions) -> Vec<CopyRow> {
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        // Split at unescaped delimiters, then unescape each field.
        let mut chars = line.chars();
        let mut raw = String::new();
        while let Some(c) = chars.next() {
            if c == '\\' {
                raw.push(c);
                if let Some(next) = chars.next() {
                    raw.push(next);
                }
            } else if c == options.delimiter {
                row.push(text_field(std::mem::take(&mut raw), options));
            } else {
                raw.push(c);
            }
        }
        row.push(text_field(raw, options));
        rows.push(row);
    }
    rows
}

fn text_field(raw: String, options: &CopyOptions) -> Option<String> {
    if raw == options.null {
        None
    } else {
        Some(unescape_text(&raw))
    }
}

/// Undoes COPY text escapes (and E'' string escapes, which are the same).
fn unescape_text(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|d| d.to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            chars.next();
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push('x');
                } else if let Some(ch) = char::from_u32(value) {
                    out.push(ch);
                }
            }
            Some(d @ '0'..='7') => {
                let mut value = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                if let Some(ch) = char::from_u32(value) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn parse_csv(text: &str, options: &CopyOptions) -> Result<Vec<CopyRow>, PgError> {
    let (quote, escape, delimiter) = (options.quote, options.escape, options.delimiter);
    let mut rows = Vec::new();
    let mut row: CopyRow = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field had quotes
    let mut in_quotes = false;
    let mut at_line_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == escape && chars.peek() == Some(&quote) && (escape != quote || c == quote) {
                // `""` (or the escape char before a quote) is a literal quote.
                chars.next();
                field.push(quote);
            } else if c == quote {
                in_quotes = false;
            } else if c == escape && escape != quote && chars.peek() == Some(&escape) {
                chars.next();
                field.push(escape);
            } else {
                field.push(c);
            }
            continue;
        }
        if at_line_start && c == '\\' && chars.peek() == Some(&'.') {
            // `\.` alone on a line ends the data.
            let rest: String = chars.clone().take(3).collect();
            if rest == "." || rest.starts_with(".\n") || rest.starts_with(".\r") {
                break;
            }
        }
        at_line_start = false;
        if c == quote {
            in_quotes = true;
            quoted = true;
        } else if c == delimiter {
            row.push(csv_field(std::mem::take(&mut field), quoted, options));
            quoted = false;
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            row.push(csv_field(std::mem::take(&mut field), quoted, options));
            quoted = false;
            rows.push(std::mem::take(&mut row));
            at_line_start = true;
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err(error("22P04", "unterminated CSV quoted field"));
    }
    if !field.is_empty() || quoted || !row.is_empty() {
        row.push(csv_field(field, quoted, options));
        rows.push(row);
    }
    Ok(rows)
}

fn csv_field(field: String, quoted: bool, options: &CopyOptions) -> Option<String> {
    if !quoted && field == options.null {
        None
    } else {
        Some(field)
    }
}

/// One row as a line of COPY TO data (with its newline).
pub fn format_row(values: &[Option<String>], options: &CopyOptions) -> String {
    let mut line = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            line.push(options.delimiter);
        }
        match (value, options.format) {
            (None, _) => line.push_str(&options.null),
            (Some(v), CopyFormat::Text) => escape_text(v, options.delimiter, &mut line),
            (Some(v), CopyFormat::Csv) => {
                let needs_quotes = v.is_empty() && options.null.is_empty()
                    || v == &options.null
                    || v.contains([options.delimiter, options.quote, '\n', '\r'])
                    || v.starts_with("\\.");
                if needs_quotes {
                    line.push(options.quote);
                    for c in v.chars() {
                        if c == options.quote || c == options.escape {
                            line.push(options.escape);
                        }
                        line.push(c);
                    }
                    line.push(options.quote);
                } else {
                    line.push_str(v);
                }
            }
        }
    }
    line.push('\n');
    line
}

/// The header line of CSV output.
pub fn format_header(columns: &[String], options: &CopyOptions) -> String {
    let values: Vec<Option<String>> = columns.iter().map(|c| Some(c.clone())).collect();
    format_row(&values, options)
}

fn escape_text(value: &str, delimiter: char, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' if delimiter == '\t' => out.push_str("\\t"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(sql: &str) -> Result<CopyCommand, String> {
        parse(&SqlText::new(sql))
            .expect("a COPY statement")
            .map_err(|e| e.code.clone())
    }

    #[test]
    fn parses_copy_statements() {
        let csv = CopyOptions {
            format: CopyFormat::Csv,
            delimiter: ',',
            null: String::new(),
            header: true,
            quote: '"',
            escape: '"',
        };
        assert_eq!(
            command("copy pgbench_accounts from stdin with (freeze on)"),
            Ok(CopyCommand::In {
                table: "pgbench_accounts".into(),
                columns: None,
                options: CopyOptions::defaults()
            })
        );
        assert_eq!(
            command("COPY public.\"T\" (a, \"B\") FROM STDIN WITH (FORMAT csv, HEADER true)"),
            Ok(CopyCommand::In {
                table: "T".into(),
                columns: Some(vec!["a".into(), "B".into()]),
                options: csv.clone()
            })
        );
        assert_eq!(
            command("COPY t FROM STDIN CSV HEADER"),
            Ok(CopyCommand::In {
                table: "t".into(),
                columns: None,
                options: csv.clone()
            })
        );
        assert_eq!(
            command("copy (select 1, 'a') to stdout with delimiter '|' null 'nil'"),
            Ok(CopyCommand::Out {
                source: CopySource::Query("select 1, 'a'".into()),
                options: CopyOptions {
                    delimiter: '|',
                    null: "nil".into(),
                    ..CopyOptions::defaults()
                }
            })
        );
        assert_eq!(command("COPY t TO '/etc/passwd'"), Err("0A000".into()));
        assert_eq!(
            command("COPY t FROM STDIN (FORMAT binary)"),
            Err("0A000".into())
        );
        assert_eq!(command("COPY (select 1) FROM STDIN"), Err("42601".into()));
        assert_eq!(command("COPY t FROM STDIN (HEADER)"), Err("0A000".into()));
        assert!(parse(&SqlText::new("SELECT 1")).is_none());
    }

    #[test]
    fn text_data_round_trips() {
        let options = CopyOptions::defaults();
        let rows = vec![
            vec![Some("1".into()), Some("tab\there".into()), None],
            vec![
                Some("2".into()),
                Some("back\\slash\nnewline".into()),
                Some(String::new()),
            ],
        ];
        let data: String = rows.iter().map(|r| format_row(r, &options)).collect();
        assert_eq!(data, "1\ttab\\there\t\\N\n2\tback\\\\slash\\nnewline\t\n");
        let parsed = parse_rows(format!("{data}\\.\n").as_bytes(), &options, 3).expect("parse");
        assert_eq!(parsed, rows);
        assert_eq!(
            parse_rows(b"\\x41\\101\\z\n", &options, 1).expect("escapes"),
            vec![vec![Some("AAz".into())]]
        );
        let short = parse_rows(b"1\t2\n", &options, 3).map_err(|e| e.code.clone());
        assert_eq!(short, Err("22P04".into()));
    }

    #[test]
    fn csv_data_round_trips() {
        let options = CopyOptions {
            format: CopyFormat::Csv,
            delimiter: ',',
            null: String::new(),
            header: false,
            quote: '"',
            escape: '"',
        };
        let rows = vec![
            vec![Some("1".into()), Some("a,b".into()), None],
            vec![
                Some("2".into()),
                Some("say \"hi\"\nthere".into()),
                Some(String::new()),
            ],
        ];
        let data: String = rows.iter().map(|r| format_row(r, &options)).collect();
        assert_eq!(data, "1,\"a,b\",\n2,\"say \"\"hi\"\"\nthere\",\"\"\n");
        assert_eq!(
            parse_rows(data.as_bytes(), &options, 3).expect("parse"),
            rows
        );
        let header = CopyOptions {
            header: true,
            ..options.clone()
        };
        assert_eq!(
            parse_rows(b"id,name\r\n7,x\r\n", &header, 2).expect("crlf"),
            vec![vec![Some("7".into()), Some("x".into())]]
        );
        let open = parse_rows(b"1,\"never closed\n", &options, 2).map_err(|e| e.code.clone());
        assert_eq!(open, Err("22P04".into()));
    }
}
