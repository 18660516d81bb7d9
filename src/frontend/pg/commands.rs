//! Statements the front end answers itself, without SQLite: session settings (`SET`, `SHOW`,
//! `RESET`), the handful of PostgreSQL functions clients call on connect (`SELECT version()`,
//! `current_database()`, ...), and the commands it refuses by name (explicit transactions,
//! `COPY`, `LISTEN`, ...: SQLSTATE 0A000 until their increments land).
//!
//! A setting is accepted only when Phalanx really behaves that way: `SET TimeZone = 'UTC'` is
//! fine, another zone is refused rather than ignored.

use std::collections::BTreeMap;

use crate::dispatch::Consistency;
use crate::frontend::pg::error::{PgError, error, not_supported};
use crate::frontend::pg::sql::{SqlText, TokenKind};

/// The version this server reports (`server_version`, `version()`).
pub const SERVER_VERSION: &str = concat!("15.0 (Phalanx ", env!("CARGO_PKG_VERSION"), ")");

/// Parameters reported to the client with ParameterStatus whenever they change (PostgreSQL's
/// GUC_REPORT set).
pub const REPORTED: [&str; 9] = [
    "server_version",
    "server_encoding",
    "client_encoding",
    "DateStyle",
    "integer_datetimes",
    "standard_conforming_strings",
    "TimeZone",
    "application_name",
    "IntervalStyle",
];

/// A session's settings, by canonical name (PostgreSQL's spelling, e.g. `DateStyle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
    pub consistency: Consistency,
    /// This node's default for `phalanx.max_lag_ms` (`read_max_lag_ms`), for `RESET`.
    max_lag_default: std::time::Duration,
}

/// Every setting the front end knows, with its default; `max_lag_default` is the node's
/// `read_max_lag_ms`.
fn defaults(max_lag_default: std::time::Duration) -> Vec<(&'static str, String)> {
    vec![
        ("server_version", SERVER_VERSION.into()),
        ("server_version_num", "150000".into()),
        ("server_encoding", "UTF8".into()),
        ("client_encoding", "UTF8".into()),
        ("DateStyle", "ISO, MDY".into()),
        ("IntervalStyle", "postgres".into()),
        ("integer_datetimes", "on".into()),
        ("standard_conforming_strings", "on".into()),
        ("TimeZone", "UTC".into()),
        ("application_name", String::new()),
        ("search_path", "\"$user\", public".into()),
        ("extra_float_digits", "1".into()),
        ("is_superuser", "on".into()),
        ("max_identifier_length", "63".into()),
        ("transaction_isolation", "serializable".into()),
        ("default_transaction_isolation", "serializable".into()),
        ("default_transaction_read_only", "off".into()),
        ("statement_timeout", "0".into()),
        ("lock_timeout", "0".into()),
        ("idle_in_transaction_session_timeout", "0".into()),
        ("phalanx.read_consistency", "linearizable".into()),
        (
            "phalanx.max_lag_ms",
            max_lag_default.as_millis().to_string(),
        ),
    ]
}

/// The settings as `pg_settings` shows them (their defaults, `phalanx.max_lag_ms` this node's
/// `max_lag_default`), plus `max_connections` (this node's PostgreSQL connection limit).
pub fn catalog_settings(
    max_connections: usize,
    max_lag_default: std::time::Duration,
) -> Vec<crate::storage::catalog::facts::Setting> {
    let mut settings: Vec<_> = defaults(max_lag_default)
        .into_iter()
        .chain([("max_connections", max_connections.to_string())])
        .map(|(name, value)| {
            let fixed = matches!(
                name,
                "server_version"
                    | "server_version_num"
                    | "server_encoding"
                    | "integer_datetimes"
                    | "max_identifier_length"
                    | "max_connections"
                    | "is_superuser"
            );
            crate::storage::catalog::facts::Setting {
                name: name.to_owned(),
                value,
                category: if name.starts_with("phalanx.") {
                    "Phalanx"
                } else if fixed {
                    "Preset Options"
                } else {
                    "Client Connection Defaults"
                },
                description: description(name).to_owned(),
                context: if name == "max_connections" {
                    "postmaster"
                } else if fixed {
                    "internal"
                } else {
                    "user"
                },
            }
        })
        .collect();
    settings.sort_by_key(|s| s.name.to_lowercase());
    settings
}

fn description(name: &str) -> &'static str {
    match name {
        "server_version" => "Shows the server version.",
        "server_version_num" => "Shows the server version as an integer.",
        "server_encoding" => "Shows the server (database) character set encoding.",
        "client_encoding" => "Sets the client's character set encoding (UTF8 only).",
        "DateStyle" => "Sets the display format for date and time values.",
        "IntervalStyle" => "Sets the display format for interval values.",
        "integer_datetimes" => "Shows whether datetimes are integer based.",
        "standard_conforming_strings" => "Causes '...' strings to treat backslashes literally.",
        "TimeZone" => "Sets the time zone for displaying and interpreting time stamps (UTC only).",
        "application_name" => "Sets the application name to be reported in statistics and logs.",
        "search_path" => "Sets the schema search order for names that are not schema-qualified.",
        "extra_float_digits" => "Sets the number of digits displayed for floating-point values.",
        "is_superuser" => "Shows whether the current user is a superuser.",
        "max_identifier_length" => "Shows the maximum identifier length.",
        "transaction_isolation" => "Sets the current transaction's isolation level.",
        "default_transaction_isolation" => {
            "Sets the transaction isolation level of each new transaction."
        }
        "default_transaction_read_only" => "Sets the default read-only status of new transactions.",
        "statement_timeout" => "Sets the maximum allowed duration of any statement.",
        "lock_timeout" => "Sets the maximum allowed duration of any wait for a lock.",
        "idle_in_transaction_session_timeout" => {
            "Sets the maximum allowed idle time between queries, when in a transaction."
        }
        "phalanx.read_consistency" => {
            "Consistency of autocommit reads: linearizable, session (read-your-writes), bounded \
             (at most phalanx.max_lag_ms stale) or any."
        }
        "phalanx.max_lag_ms" => {
            "How far behind the leader, in milliseconds, a bounded read may be."
        }
        "max_connections" => "Sets the maximum number of PostgreSQL connections to this node.",
        _ => "",
    }
}

fn canonical(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let lower = match lower.as_str() {
        "names" => "client_encoding",
        "time zone" | "timezone" => "TimeZone",
        "schema" => "search_path",
        other => other,
    }
    .to_ascii_lowercase();
    SETTING_NAMES
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(&lower))
}

/// The names of [`defaults`], listed once (a lookup per statement must not rebuild them).
static SETTING_NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    defaults(std::time::Duration::ZERO)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
});

impl Settings {
    /// Defaults (`max_lag_default`: this node's `read_max_lag_ms`), then the startup
    /// packet's parameters where they are acceptable.
    pub fn new(
        startup: &BTreeMap<String, String>,
        max_lag_default: std::time::Duration,
    ) -> Settings {
        let mut settings = Settings {
            values: defaults(max_lag_default).into_iter().collect(),
            consistency: Consistency::Linearizable,
            max_lag_default,
        };
        for (name, value) in startup {
            if let Some(name) = canonical(name) {
                // A startup value we cannot honour keeps the default; the client sees the real
                // value in ParameterStatus.
                let _ = settings.set(name, value);
            }
        }
        settings
    }

    /// The session's bound for `bounded` reads.
    pub fn max_lag(&self) -> std::time::Duration {
        self.get("phalanx.max_lag_ms")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(self.max_lag_default, std::time::Duration::from_millis)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(value) = self.values.get(name) {
            return Some(value); // Already the canonical spelling.
        }
        canonical(name).and_then(|n| self.values.get(n).map(String::as_str))
    }

    /// The reported parameters and their values, for ParameterStatus at startup.
    pub fn reported(&self) -> Vec<(&'static str, String)> {
        REPORTED
            .iter()
            .map(|n| (*n, self.values.get(n).cloned().unwrap_or_default()))
            .collect()
    }

    /// Sets `name` to `value` if Phalanx behaves that way; returns the canonical name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&'static str, PgError> {
        let Some(name) = canonical(name) else {
            return Err(not_supported(format!("configuration parameter \"{name}\"")));
        };
        let trimmed = value.trim();
        let lower = trimmed.to_ascii_lowercase();
        let stored = match name {
            "client_encoding" => match lower.as_str() {
                "utf8" | "utf-8" | "unicode" => "UTF8".to_owned(),
                _ => {
                    return Err(not_supported(format!(
                        "client_encoding \"{trimmed}\" (only UTF8)"
                    )));
                }
            },
            "DateStyle" => {
                if !lower.split(',').any(|p| p.trim() == "iso") && !lower.is_empty() {
                    return Err(not_supported(format!("DateStyle \"{trimmed}\" (only ISO)")));
                }
                let order = ["dmy", "ymd", "mdy"]
                    .into_iter()
                    .find(|o| lower.contains(o))
                    .unwrap_or("mdy")
                    .to_ascii_uppercase();
                format!("ISO, {order}")
            }
            "IntervalStyle" if lower == "postgres" => "postgres".to_owned(),
            "TimeZone" => match lower.as_str() {
                "utc" | "gmt" | "etc/utc" | "etc/gmt" | "z" | "zulu" | "0" | "+00" | "+00:00"
                | "universal" => "UTC".to_owned(),
                _ => return Err(not_supported(format!("TimeZone \"{trimmed}\" (only UTC)"))),
            },
            "application_name" => trimmed.chars().take(63).collect(),
            "search_path" => {
                let known = lower.split(',').all(|p| {
                    matches!(
                        p.trim().trim_matches('"'),
                        "public" | "pg_catalog" | "$user" | ""
                    )
                });
                if !known {
                    return Err(not_supported(format!(
                        "search_path \"{trimmed}\" (every table is in schema public)"
                    )));
                }
                trimmed.to_owned()
            }
            "extra_float_digits" => match lower.parse::<i32>() {
                // 1..3 all mean "shortest exact", which is what the encoder writes.
                Ok(1..=3) => lower,
                _ => {
                    return Err(not_supported(format!(
                        "extra_float_digits {trimmed} (only 1 to 3)"
                    )));
                }
            },
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
                match lower.trim_end_matches("ms").trim_end_matches('s') {
                    "0" => "0".to_owned(),
                    _ => return Err(not_supported(format!("{name} other than 0"))),
                }
            }
            "standard_conforming_strings" if lower == "on" => "on".to_owned(),
            "phalanx.max_lag_ms" => match lower.trim_end_matches("ms").trim().parse::<u32>() {
                Ok(ms) => ms.to_string(),
                Err(_) => {
                    return Err(error(
                        "22023",
                        format!(
                            "invalid value for parameter \"phalanx.max_lag_ms\": \"{trimmed}\" (milliseconds, 0 to 4294967295)"
                        ),
                    ));
                }
            },
            "phalanx.read_consistency" => {
                self.consistency = match lower.as_str() {
                    "linearizable" => Consistency::Linearizable,
                    "session" => Consistency::Session,
                    "bounded" => Consistency::Bounded,
                    "any" => Consistency::Any,
                    _ => {
                        return Err(error(
                            "22023",
                            format!(
                                "invalid value for parameter \"phalanx.read_consistency\": \"{trimmed}\" (linearizable, session, bounded or any)"
                            ),
                        ));
                    }
                };
                lower
            }
            "IntervalStyle" | "standard_conforming_strings" => {
                return Err(not_supported(format!("{name} \"{trimmed}\"")));
            }
            other => {
                return Err(error(
                    "55P02",
                    format!("parameter \"{other}\" cannot be changed"),
                ));
            }
        };
        self.values.insert(name, stored);
        Ok(name)
    }

    /// Back to the default; returns the canonical name.
    pub fn reset(&mut self, name: &str) -> Result<&'static str, PgError> {
        let Some(name) = canonical(name) else {
            return Err(not_supported(format!("configuration parameter \"{name}\"")));
        };
        let default = defaults(self.max_lag_default)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_default();
        if name == "phalanx.read_consistency" {
            self.consistency = Consistency::Linearizable;
        }
        self.values.insert(name, default);
        Ok(name)
    }

    pub fn all(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
}

/// The settings in a startup packet's `options`: `-c name=value`, `-cname=value` or
/// `--name=value`, separated by spaces (`\ ` escapes a space).
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let pair = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("-c")
                .or_else(|| word.strip_prefix("--"))
                .map(str::to_owned)
        };
        if let Some((name, value)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            settings.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    settings
}

/// A statement answered by the front end itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SET name TO value` (`SET LOCAL` is a no-op outside a transaction, as in PostgreSQL).
    Set {
        name: String,
        value: String,
        local: bool,
    },
    /// `SET name TO DEFAULT`, `RESET name`; `None` is `RESET ALL`.
    Reset { name: Option<String> },
    /// `SHOW name`; `None` is `SHOW ALL`.
    Show { name: Option<String> },
    /// `SELECT f()` for a session function: one row, one column.
    Function { column: String, function: Function },
    /// `DEALLOCATE [PREPARE] name`; `None` is `DEALLOCATE ALL`. Drops a prepared statement
    /// (drivers such as psycopg do this when their statement cache is full).
    Deallocate { name: Option<String> },
}

/// Session functions answered locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Version,
    CurrentDatabase,
    CurrentUser,
    CurrentSchema,
    BackendPid,
}

/// Classifies `statement`: `None` for ordinary SQL (SQLite runs it), `Some(Ok)` for a command
/// answered here, `Some(Err)` for one refused here.
pub fn parse_command(statement: &SqlText) -> Option<Result<Command, PgError>> {
    let first = statement.word(0)?;
    match first.as_str() {
        "SET" => Some(parse_set(statement)),
        "RESET" => Some(match statement.word(1).as_deref() {
            Some("ALL") => Ok(Command::Reset { name: None }),
            _ => setting_name(statement, 1)
                .map(|(name, _)| Command::Reset { name: Some(name) })
                .ok_or_else(|| error("42601", "syntax error in RESET")),
        }),
        "SHOW" => Some(match statement.word(1).as_deref() {
            Some("ALL") => Ok(Command::Show { name: None }),
            Some("TRANSACTION") if statement.is_word(2, "ISOLATION") => Ok(Command::Show {
                name: Some("transaction_isolation".into()),
            }),
            Some("TIME") if statement.is_word(2, "ZONE") => Ok(Command::Show {
                name: Some("TimeZone".into()),
            }),
            _ => setting_name(statement, 1)
                .map(|(name, _)| Command::Show { name: Some(name) })
                .ok_or_else(|| error("42601", "syntax error in SHOW")),
        }),
        "DEALLOCATE" => Some(parse_deallocate(statement)),
        "PREPARE" | "EXECUTE" | "DISCARD" | "LISTEN" | "UNLISTEN" | "NOTIFY" | "COPY"
        | "DECLARE" | "FETCH" | "MOVE" | "CLOSE" | "LOCK" | "GRANT" | "REVOKE" | "COMMENT"
        | "CHECKPOINT" | "DO" | "CALL" | "LOAD" | "REFRESH" | "CLUSTER" | "SECURITY" | "IMPORT"
        | "REASSIGN" => Some(Err(not_supported(first))),
        "SELECT" => parse_function(statement).map(Ok),
        _ => None,
    }
}

fn parse_deallocate(statement: &SqlText) -> Result<Command, PgError> {
    let at = if statement.is_word(1, "PREPARE") {
        2
    } else {
        1
    };
    let syntax = || error("42601", "syntax error in DEALLOCATE");
    if statement.tokens.len() != at + 1 {
        return Err(syntax());
    }
    if statement.is_word(at, "ALL") {
        return Ok(Command::Deallocate { name: None });
    }
    let name = statement.tokens[at]
        .identifier(&statement.sql)
        .ok_or_else(syntax)?;
    Ok(Command::Deallocate { name: Some(name) })
}

/// A setting name at token `at` (`a` or `a.b`); returns it and the index after it.
fn setting_name(statement: &SqlText, at: usize) -> Option<(String, usize)> {
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let mut name = tokens.get(at)?.identifier(sql)?;
    let mut next = at + 1;
    while tokens.get(next).is_some_and(|t| t.is_punct(sql, "."))
        && let Some(part) = tokens.get(next + 1).and_then(|t| t.identifier(sql))
    {
        name = format!("{name}.{part}");
        next += 2;
    }
    Some((name, next))
}

fn parse_set(statement: &SqlText) -> Result<Command, PgError> {
    let sql = &statement.sql;
    let tokens = &statement.tokens;
    let mut at = 1;
    let mut local = false;
    match statement.word(1).as_deref() {
        Some("SESSION") if !statement.is_word(2, "CHARACTERISTICS") => at = 2,
        Some("LOCAL") => {
            local = true;
            at = 2;
        }
        _ => {}
    }
    let syntax = || error("42601", "syntax error in SET");
    let (name, mut next) = match (statement.word(at).as_deref(), statement.word(at + 1)) {
        (Some("TIME"), Some(zone)) if zone == "ZONE" => ("TimeZone".to_owned(), at + 2),
        (Some("NAMES"), _) => ("client_encoding".to_owned(), at + 1),
        (Some("SCHEMA"), _) => ("search_path".to_owned(), at + 1),
        (Some("TRANSACTION" | "SESSION"), _) => {
            return Err(not_supported("SET TRANSACTION"));
        }
        _ => setting_name(statement, at).ok_or_else(syntax)?,
    };
    if tokens
        .get(next)
        .is_some_and(|t| t.is_word(sql, "TO") || t.is_punct(sql, "="))
    {
        next += 1;
    }
    if next >= tokens.len() {
        return Err(syntax());
    }
    if statement.is_word(next, "DEFAULT") || statement.is_word(next, "LOCAL") {
        return Ok(Command::Reset { name: Some(name) });
    }
    let mut parts: Vec<String> = Vec::new();
    for token in &tokens[next..] {
        let text = token.text(sql);
        match token.kind {
            TokenKind::String => {
                let inner = text
                    .get(1..text.len().saturating_sub(1))
                    .unwrap_or("")
                    .replace("''", "'");
                parts.push(inner);
            }
            TokenKind::Punct if text == "," => {}
            TokenKind::Punct if text == "-" || text == "+" => parts.push(text.to_owned()),
            TokenKind::Word => parts.push(text.to_ascii_lowercase()),
            _ => {
                let piece = token.identifier(sql).unwrap_or_else(|| text.to_owned());
                match parts.last_mut() {
                    Some(sign) if sign == "-" || sign == "+" => sign.push_str(&piece),
                    _ => parts.push(piece),
                }
            }
        }
    }
    Ok(Command::Set {
        name,
        value: parts.join(", "),
        local,
    })
}

/// `SELECT version()`, `SELECT pg_catalog.current_database() AS db`, `SELECT current_user`.
fn parse_function(statement: &SqlText) -> Option<Command> {
    let sql = &statement.sql;
    let mut words: Vec<String> = statement
        .tokens
        .iter()
        .skip(1)
        .map(|t| t.text(sql).to_ascii_lowercase())
        .collect();
    if words.len() >= 2 && words[0] == "pg_catalog" && words[1] == "." {
        words.drain(0..2);
    }
    let (call, rest) = if words.get(1).map(String::as_str) == Some("(")
        && words.get(2).map(String::as_str) == Some(")")
    {
        (words.first()?.clone(), &words[3..])
    } else {
        (words.first()?.clone(), &words[1..])
    };
    let function = match call.as_str() {
        "version" => Function::Version,
        "current_database" | "current_catalog" => Function::CurrentDatabase,
        "current_user" | "session_user" | "user" => Function::CurrentUser,
        "current_schema" => Function::CurrentSchema,
        "pg_backend_pid" => Function::BackendPid,
        _ => return None,
    };
    let column = match rest {
        [] => call,
        [as_word, alias] if as_word == "as" => alias.trim_matches('"').to_owned(),
        [alias] => alias.trim_matches('"').to_owned(),
        _ => return None,
    };
    Some(Command::Function { column, function })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(sql: &str) -> Option<Result<Command, String>> {
        parse_command(&SqlText::new(sql)).map(|r| r.map_err(|e| e.code))
    }

    #[test]
    fn parses_set_show_reset() {
        assert_eq!(
            command("SET application_name = 'psql'"),
            Some(Ok(Command::Set {
                name: "application_name".into(),
                value: "psql".into(),
                local: false
            }))
        );
        assert_eq!(
            command("set phalanx.read_consistency to session"),
            Some(Ok(Command::Set {
                name: "phalanx.read_consistency".into(),
                value: "session".into(),
                local: false
            }))
        );
        assert_eq!(
            command("SET search_path TO public, pg_catalog"),
            Some(Ok(Command::Set {
                name: "search_path".into(),
                value: "public, pg_catalog".into(),
                local: false
            }))
        );
        assert_eq!(
            command("SET TIME ZONE 'UTC'"),
            Some(Ok(Command::Set {
                name: "TimeZone".into(),
                value: "UTC".into(),
                local: false
            }))
        );
        assert_eq!(
            command("SHOW server_version"),
            Some(Ok(Command::Show {
                name: Some("server_version".into())
            }))
        );
        assert_eq!(
            command("RESET ALL"),
            Some(Ok(Command::Reset { name: None }))
        );
        // Transaction control is not a command (frontend::pg::transaction parses it).
        assert_eq!(command("BEGIN"), None);
        assert_eq!(command("COPY t FROM STDIN"), Some(Err("0A000".into())));
        assert_eq!(command("SELECT * FROM t"), None);
        assert_eq!(command("INSERT INTO t VALUES (1)"), None);
    }

    #[test]
    fn parses_session_functions() {
        assert_eq!(
            command("select version()"),
            Some(Ok(Command::Function {
                column: "version".into(),
                function: Function::Version
            }))
        );
        assert_eq!(
            command("SELECT pg_catalog.current_database() AS db"),
            Some(Ok(Command::Function {
                column: "db".into(),
                function: Function::CurrentDatabase
            }))
        );
        assert_eq!(
            command("SELECT current_user"),
            Some(Ok(Command::Function {
                column: "current_user".into(),
                function: Function::CurrentUser
            }))
        );
        assert_eq!(command("SELECT version() + 1"), None);
    }

    #[test]
    fn parses_startup_options() {
        assert_eq!(
            parse_options(
                "-c phalanx.read_consistency=any --application-name=x\\ y -cTimeZone=UTC"
            ),
            vec![
                ("phalanx.read_consistency".to_owned(), "any".to_owned()),
                ("application_name".to_owned(), "x y".to_owned()),
                ("TimeZone".to_owned(), "UTC".to_owned()),
            ]
        );
    }

    #[test]
    fn settings_accept_only_what_phalanx_does() {
        let mut s = Settings::new(
            &BTreeMap::from([("application_name".to_owned(), "app".to_owned())]),
            std::time::Duration::from_millis(250),
        );
        assert_eq!(
            s.get("phalanx.max_lag_ms"),
            Some("250"),
            "the node's default"
        );
        assert_eq!(s.max_lag(), std::time::Duration::from_millis(250));
        assert!(s.set("phalanx.max_lag_ms", "40").is_ok());
        assert_eq!(s.max_lag(), std::time::Duration::from_millis(40));
        assert!(s.reset("phalanx.max_lag_ms").is_ok());
        assert_eq!(
            s.get("phalanx.max_lag_ms"),
            Some("250"),
            "RESET: the node's default"
        );
        assert_eq!(s.get("application_name"), Some("app"));
        assert!(s.set("client_encoding", "utf8").is_ok());
        assert_eq!(
            s.set("client_encoding", "latin1").map_err(|e| e.code),
            Err("0A000".into())
        );
        assert_eq!(
            s.set("TimeZone", "Europe/Paris").map_err(|e| e.code),
            Err("0A000".into())
        );
        assert_eq!(
            s.set("datestyle", "iso, dmy").map_err(|e| e.code),
            Ok("DateStyle")
        );
        assert_eq!(s.get("DateStyle"), Some("ISO, DMY"));
        assert_eq!(
            s.set("server_version", "1").map_err(|e| e.code),
            Err("55P02".into())
        );
        assert_eq!(
            s.set("work_mem", "1MB").map_err(|e| e.code),
            Err("0A000".into())
        );
        assert!(s.set("phalanx.read_consistency", "session").is_ok());
        assert_eq!(s.consistency, Consistency::Session);
        assert_eq!(
            s.set("phalanx.read_consistency", "eventual")
                .map_err(|e| e.code),
            Err("22023".into())
        );
        assert!(s.reset("phalanx.read_consistency").is_ok());
        assert_eq!(s.consistency, Consistency::Linearizable);
    }
}
