//! The seam between the store's queries and a database: values, rows, one connection
//! ([`Conn`]) and a backend that runs work in a transaction ([`Backend`]).  The queries
//! (`queries*.rs`) are written once, against this, in the SQL both SQLite and
//! PostgreSQL speak: `$1` placeholders, `ON CONFLICT`, `RETURNING`, `"user"` quoted,
//! integers as 64-bit, booleans as integers, time as Unix milliseconds.

use std::fmt;

/// One parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v as i64)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v as i64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as i64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        v.as_deref().into()
    }
}

/// Parameters of a query: `vals![a, b, c]`, each converted with `Value::from`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::gateway::store::sql::Value::from($v)),*][..] };
}
pub(crate) use vals;

/// What went wrong under a query: the database refused it, a value read back is not
/// what the schema promises, or the database could not be reached (its connection
/// refused, broken or closed: asking again later may succeed).
#[derive(Debug)]
pub enum SqlError {
    Db(String),
    Corrupt(String),
    Unavailable(String),
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Db(m) | SqlError::Corrupt(m) | SqlError::Unavailable(m) => f.write_str(m),
        }
    }
}

pub type SqlResult<T> = std::result::Result<T, SqlError>;

/// One row, its columns in the order the query selected them.
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> SqlResult<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| SqlError::Corrupt(format!("no column {i}")))
    }

    pub fn opt_text(&self, i: usize) -> SqlResult<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Int(v) => Err(SqlError::Corrupt(format!(
                "column {i}: expected text, found {v}"
            ))),
        }
    }

    pub fn text(&self, i: usize) -> SqlResult<String> {
        self.opt_text(i)?
            .ok_or_else(|| SqlError::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub fn opt_int(&self, i: usize) -> SqlResult<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(s) => Err(SqlError::Corrupt(format!(
                "column {i}: expected an integer, found {s:?}"
            ))),
        }
    }

    pub fn int(&self, i: usize) -> SqlResult<i64> {
        self.opt_int(i)?
            .ok_or_else(|| SqlError::Corrupt(format!("column {i}: unexpected NULL")))
    }

    pub fn u64(&self, i: usize) -> SqlResult<u64> {
        Ok(self.int(i)? as u64)
    }

    pub fn opt_u64(&self, i: usize) -> SqlResult<Option<u64>> {
        Ok(self.opt_int(i)?.map(|v| v as u64))
    }

    pub fn flag(&self, i: usize) -> SqlResult<bool> {
        Ok(self.int(i)? != 0)
    }

    /// A word column (job state, kind, ledger result) read back into its enum.
    pub fn word<T: std::str::FromStr<Err = String>>(&self, i: usize) -> SqlResult<T> {
        self.text(i)?.parse().map_err(SqlError::Corrupt)
    }
}

/// One connection, in a transaction or not.
pub trait Conn {
    /// Runs a statement; the rows it changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64>;
    /// Runs a query; its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<Vec<Row>>;
    /// Tells the followers of other gateways that `job` has news (sent at commit).
    /// A store that only one gateway uses has nobody to tell.
    fn notify(&mut self, _job: &str) -> SqlResult<()> {
        Ok(())
    }
}

impl dyn Conn + '_ {
    /// The first row, if any.
    pub fn first(&mut self, sql: &str, params: &[Value]) -> SqlResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first column of every row, as text.
    pub fn texts(&mut self, sql: &str, params: &[Value]) -> SqlResult<Vec<String>> {
        self.query(sql, params)?.iter().map(|r| r.text(0)).collect()
    }
}

/// A database the queries run on.
pub trait Backend: Send + Sync {
    /// Runs `f` on a connection: in one transaction (committed when `f` returns Ok,
    /// rolled back otherwise) when `tx`, else statement by statement.
    fn run<T: Send>(
        &self,
        tx: bool,
        f: impl FnOnce(&mut dyn Conn) -> SqlResult<T> + Send,
    ) -> SqlResult<T>;

    /// Whether several gateways may share this database (then nobody may free every
    /// lock at start-up: leases do it).
    fn shared(&self) -> bool {
        false
    }

    /// Calls `wake(job)` whenever another gateway stored events of `job` (`""`: maybe
    /// any job).  A database only one gateway uses has nothing to watch.
    fn watch(&self, _wake: Box<dyn Fn(&str) + Send + Sync>) {}

    /// Holds `owner` as this process's for as long as it lives; false if another live
    /// process holds it.  (SQLite: the lock file beside it does this.)
    fn hold_identity(&self, _owner: &str) -> SqlResult<bool> {
        Ok(true)
    }

    /// Whether this process still holds `owner` (taking it again on a new session if
    /// the old one was lost); false if another process holds it now.
    fn check_identity(&self, _owner: &str) -> SqlResult<bool> {
        Ok(true)
    }

    /// What ends a subquery that picks rows to claim, so that racing claimers skip
    /// each other's rows instead of waiting on them (and never deadlock): PostgreSQL's
    /// `FOR UPDATE SKIP LOCKED`; nothing where one writer runs at a time (SQLite).
    fn skip_locked(&self) -> &'static str {
        ""
    }

    /// The query that reads the database's clock in ms since the epoch; None: the
    /// database is a file on this machine, whose clock is this process's.
    fn clock_query(&self) -> Option<&'static str> {
        None
    }
}

/// `env IN ($n, $n+1, ...)` for the environments of a scope, with their values (`1=1`
/// for all); `next` is the number of the first placeholder.
pub fn in_scope(scope: &super::Scope, next: usize) -> (String, Vec<Value>) {
    match scope {
        super::Scope::All => ("1=1".into(), Vec::new()),
        super::Scope::Envs(envs) if envs.is_empty() => ("1=0".into(), Vec::new()),
        super::Scope::Envs(envs) => {
            let marks: Vec<String> = (0..envs.len()).map(|i| format!("${}", next + i)).collect();
            (
                format!("env IN ({})", marks.join(", ")),
                envs.iter().map(Value::from).collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::store::Scope;

    #[test]
    fn a_scope_becomes_numbered_placeholders_after_the_others() {
        assert_eq!(in_scope(&Scope::All, 3), ("1=1".into(), vec![]));
        assert_eq!(in_scope(&Scope::Envs(vec![]), 3).0, "1=0");
        let (sql, vals) = in_scope(&Scope::Envs(vec!["a".into(), "b".into()]), 3);
        assert_eq!(sql, "env IN ($3, $4)");
        assert_eq!(vals, vec![Value::from("a"), Value::from("b")]);
    }

    #[test]
    fn a_password_in_a_database_url_is_never_shown() {
        use crate::gateway::store::redact;
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db?x=a:b@c"), "postgres://h/db?x=a:b@c");
    }

    #[test]
    fn rows_read_back_typed_or_say_what_is_wrong() {
        let r = Row(vec![Value::Int(7), Value::Null, Value::from("running")]);
        assert_eq!(r.u64(0).unwrap(), 7);
        assert_eq!(r.opt_text(1).unwrap(), None);
        assert!(r.text(1).unwrap_err().to_string().contains("NULL"));
        assert!(r.int(2).unwrap_err().to_string().contains("\"running\""));
        assert!(r.text(9).is_err());
    }
}
