//! Which integer literals of a statement sit where a bound parameter means exactly what the
//! literal means, so that the statement cache may send them as parameters and SQLite prepares
//! one statement per shape instead of one per text (`... WHERE aid = 1234`, then `= 5678`).
//!
//! Only value positions qualify: the `WHERE` and `HAVING` of a top-level `SELECT`, its
//! `LIMIT`/`OFFSET`, the rows of `VALUES`, the assignments and `WHERE` of `UPDATE` and of
//! `ON CONFLICT DO UPDATE`, and the `WHERE` of `DELETE`. Everything else keeps its literals:
//! in a result column a parameter would change the column's name (`SELECT 1`), in `ORDER BY`
//! and `GROUP BY` an integer is a column position while a parameter is a constant, and a
//! subquery anywhere may hold either.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, LimitClause, OnConflictAction, OnInsert, Query, SetExpr, Statement, Value, Visit, Visitor,
};

/// The literals found in value positions of `statement`, by what `index_of` maps their text
/// to (literals it maps to `None` are not counted).
pub fn value_literals(
    statement: &Statement,
    index_of: &dyn Fn(&str) -> Option<usize>,
) -> BTreeSet<usize> {
    let mut finder = Finder {
        index_of,
        query_depth: 0,
        found: BTreeSet::new(),
    };
    match statement {
        Statement::Query(query) => finder.query(query),
        Statement::Insert(insert) => {
            if let Some(source) = &insert.source
                && let SetExpr::Values(values) = source.body.as_ref()
            {
                for row in &values.rows {
                    finder.exprs(row);
                }
            }
            if let Some(OnInsert::OnConflict(on_conflict)) = &insert.on
                && let OnConflictAction::DoUpdate(update) = &on_conflict.action
            {
                for assignment in &update.assignments {
                    finder.expr(&assignment.value);
                }
                finder.optional(update.selection.as_ref());
            }
        }
        Statement::Update(update) => {
            for assignment in &update.assignments {
                finder.expr(&assignment.value);
            }
            finder.optional(update.selection.as_ref());
        }
        Statement::Delete(delete) => finder.optional(delete.selection.as_ref()),
        _ => {}
    }
    finder.found
}

struct Finder<'a> {
    index_of: &'a dyn Fn(&str) -> Option<usize>,
    /// How many queries the visit is inside: literals in a subquery are not counted.
    query_depth: usize,
    found: BTreeSet<usize>,
}

impl Finder<'_> {
    fn query(&mut self, query: &Query) {
        match query.body.as_ref() {
            SetExpr::Select(select) => {
                self.optional(select.selection.as_ref());
                self.optional(select.having.as_ref());
            }
            SetExpr::Values(values) => {
                for row in &values.rows {
                    self.exprs(row);
                }
            }
            _ => return,
        }
        match &query.limit_clause {
            Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                self.optional(limit.as_ref());
                self.optional(offset.as_ref().map(|o| &o.value));
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset);
                self.expr(limit);
            }
            None => {}
        }
    }

    fn optional(&mut self, expr: Option<&Expr>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn exprs(&mut self, exprs: &[Expr]) {
        for expr in exprs {
            self.expr(expr);
        }
    }

    fn expr(&mut self, expr: &Expr) {
        let _ = expr.visit(self);
    }
}

impl Visitor for Finder<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.query_depth == 0
            && let Expr::Value(value) = expr
            && let Value::Number(text, _) = &value.value
            && let Some(index) = (self.index_of)(text)
        {
            self.found.insert(index);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    /// The literals (by their own value) found in value positions.
    fn found(sql: &str) -> Vec<usize> {
        let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        let statement = parsed.pop().expect("one statement");
        value_literals(&statement, &|text| text.parse().ok())
            .into_iter()
            .collect()
    }

    #[test]
    fn value_positions_are_found() {
        assert_eq!(found("SELECT a FROM t WHERE b = 11 AND c < 12"), [11, 12]);
        assert_eq!(found("SELECT a FROM t LIMIT 13 OFFSET 14"), [13, 14]);
        assert_eq!(
            found("SELECT a, count(*) FROM t GROUP BY a HAVING count(*) > 15"),
            [15]
        );
        assert_eq!(
            found("INSERT INTO t VALUES (16, -17), (18, 19)"),
            [16, 17, 18, 19]
        );
        assert_eq!(found("UPDATE t SET a = a + 20 WHERE b = 21"), [20, 21]);
        assert_eq!(found("DELETE FROM t WHERE b BETWEEN 22 AND 23"), [22, 23]);
        assert_eq!(
            found("INSERT INTO t VALUES (24) ON CONFLICT (a) DO UPDATE SET b = 25 WHERE t.c = 26"),
            [24, 25, 26]
        );
        assert_eq!(found("VALUES (27, 28)"), [27, 28]);
    }

    #[test]
    fn positions_where_a_parameter_would_differ_are_not() {
        // Result columns (their names), ORDER BY / GROUP BY positions, subqueries.
        assert!(found("SELECT 1, a + 2 FROM t").is_empty());
        assert!(found("SELECT a FROM t ORDER BY 1").is_empty());
        assert!(found("SELECT a, count(*) FROM t GROUP BY 1").is_empty());
        assert!(
            found("SELECT a FROM t WHERE EXISTS (SELECT b FROM u ORDER BY 1 LIMIT 1)").is_empty()
        );
        assert_eq!(
            found("SELECT a FROM t WHERE b = 3 AND c IN (SELECT 4 FROM u WHERE d = 5)"),
            [3]
        );
        assert!(found("INSERT INTO t SELECT 6, 7 FROM u WHERE a = 8").is_empty());
        assert!(found("SELECT 1 UNION SELECT a FROM t WHERE b = 9").is_empty());
        assert_eq!(
            found("WITH w AS (SELECT 10 AS v) SELECT v FROM w WHERE v = 11"),
            [11]
        );
        assert!(found("CREATE TABLE t (a VARCHAR(10) DEFAULT 12)").is_empty());
        assert!(found("UPDATE t SET a = (SELECT 13) RETURNING 14").is_empty());
    }
}
