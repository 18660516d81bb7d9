//! What the PostgreSQL → SQLite translation costs per statement, on pgbench's simple-protocol
//! TPC-B statements (translated every time they are sent). A measurement, not a test:
//! `cargo run --release --example translation_cost`.

use phalanx::frontend::pg::dialect::translate;
use phalanx::frontend::pg::sql::SqlText;

const STATEMENTS: [&str; 5] = [
    "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 1234",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 1234",
    "UPDATE pgbench_tellers SET tbalance = tbalance + -4321 WHERE tid = 7",
    "UPDATE pgbench_branches SET bbalance = bbalance + -4321 WHERE bid = 1",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 1234, -4321, CURRENT_TIMESTAMP)",
];

fn main() {
    let statements: Vec<SqlText> = STATEMENTS.iter().map(|s| SqlText::new(s)).collect();
    let rounds = 20_000u32;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for statement in &statements {
            if let Err(e) = std::hint::black_box(translate(statement)) {
                eprintln!("{}: {e}", statement.sql);
                std::process::exit(1);
            }
        }
    }
    let per_statement = start.elapsed() / (rounds * statements.len() as u32);
    println!("translation: {per_statement:?} per pgbench statement");
}
