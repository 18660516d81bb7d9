//! What the PostgreSQL → SQLite translation costs per statement, on pgbench's simple-protocol
//! TPC-B statements (translated every time they are sent, each time with other numbers): a
//! fresh translation (parse, rewrite, print) and one filled in from the shape cache. A
//! measurement, not a test: `cargo run --release --example translation_cost`.

use phalanx::frontend::pg::dialect::{translate, translate_uncached};
use phalanx::frontend::pg::sql::SqlText;

/// pgbench's TPC-B statements with `{a}`, `{t}`, `{b}`, `{d}` for its random values.
const STATEMENTS: [&str; 5] = [
    "UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a}",
    "SELECT abalance FROM pgbench_accounts WHERE aid = {a}",
    "UPDATE pgbench_tellers SET tbalance = tbalance + {d} WHERE tid = {t}",
    "UPDATE pgbench_branches SET bbalance = bbalance + {d} WHERE bid = {b}",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({t}, {b}, {a}, {d}, CURRENT_TIMESTAMP)",
];

fn statements(round: u32) -> Vec<SqlText> {
    STATEMENTS
        .iter()
        .map(|s| {
            SqlText::new(
                &s.replace("{a}", &(round * 7919 % 1_000_000).to_string())
                    .replace("{t}", &(round % 100).to_string())
                    .replace("{b}", &(round % 10).to_string())
                    .replace("{d}", &(i64::from(round % 10_000) - 5000).to_string()),
            )
        })
        .collect()
}

fn measure(
    label: &str,
    translate: fn(
        &SqlText,
    ) -> Result<
        phalanx::frontend::pg::dialect::Translation,
        phalanx::frontend::pg::dialect::TranslateError,
    >,
) {
    let rounds = 20_000u32;
    let inputs: Vec<Vec<SqlText>> = (0..rounds).map(statements).collect();
    let start = std::time::Instant::now();
    for round in &inputs {
        for statement in round {
            if let Err(e) = std::hint::black_box(translate(statement)) {
                eprintln!("{}: {e}", statement.sql);
                std::process::exit(1);
            }
        }
    }
    let per_statement = start.elapsed() / (rounds * STATEMENTS.len() as u32);
    println!("{label}: {per_statement:?} per pgbench statement");
}

fn main() {
    measure("fresh translation", translate_uncached);
    measure("shape cache", translate);
}
