//! The Devices list's query, built for either engine from the filters that are set: no
//! `? IS NULL OR ...` branches for the planner to see through, the count without the batches
//! join, and a text search that starts from the trigram index (FTS5 on SQLite, pg_trgm on
//! PostgreSQL) when the text is long enough for one.

use vesper_core::model::{COUNT_CAP, DeviceFilter, DeviceSort, Status};

use super::Result;
use super::devices::{date_bound, like_pattern};

/// Which engine the query is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A filtered, ordered page: `WHERE` over `devices d` and its text arguments, in order.
#[derive(Debug)]
pub(crate) struct Listing {
    pub filter: String,
    /// Whether the text search starts from the trigram index (then the matches may be few,
    /// and sorting them beats reading the whole list in order).
    pub indexed: bool,
    pub args: Vec<String>,
    pub order: String,
    /// The same order as expressions SQLite cannot read from an index (`+column`): it sorts
    /// the few matches instead of walking the whole list in order looking for them.
    pub sorted_order: String,
    /// SQLite: counts the text's index matches alone, up to the cap (query, phrase): past it
    /// the text is common, and reading the list in order finds a page sooner than the index.
    pub probe: Option<(String, String)>,
    /// No filter but the text.
    pub only_text: bool,
    pub limit: u32,
    pub offset: u32,
}

struct Builder {
    dialect: Dialect,
    clauses: Vec<String>,
    args: Vec<String>,
    indexed: bool,
    /// SQLite: search the text by scanning (a common text), not through the index.
    scan_text: bool,
    probe: Option<(String, String)>,
}

impl Builder {
    /// A placeholder for `value`.
    fn bind(&mut self, value: String) -> String {
        self.args.push(value);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.args.len()),
            Dialect::Postgres => format!("${}", self.args.len()),
        }
    }

    fn equal(&mut self, column: &str, value: Option<&str>) {
        if let Some(value) = value {
            let p = self.bind(value.to_owned());
            self.clauses.push(format!("{column} = {p}"));
        }
    }

    /// The text search. Substrings ignore ASCII case on both engines; personal columns (e-mail
    /// addresses, user ids) only for callers allowed to see them.
    fn text(&mut self, text: &str, personal: bool) {
        let pattern = self.bind(like_pattern(text));
        let clause = match self.dialect {
            Dialect::Sqlite if text.chars().count() >= 3 && !self.scan_text => {
                self.indexed = true;
                let columns = if personal {
                    "serial_number mac station assigned_email"
                } else {
                    "serial_number mac station"
                };
                let query = format!("{{{columns}}} : \"{}\"", text.replace('"', "\"\""));
                self.probe = Some((
                    format!(
                        "SELECT count(*) FROM (SELECT rowid FROM devices_search WHERE devices_search MATCH ?1 LIMIT {})",
                        COUNT_CAP + 1
                    ),
                    query.clone(),
                ));
                let phrase = self.bind(query);
                // The users' branch starts from device_users (a few rows), never from a scan of
                // the devices (which SQLite 3.54 picks for a join here).
                let users = if personal {
                    format!(
                        " UNION SELECT d2.rowid FROM devices d2 WHERE d2.serial_number IN
                            (SELECT serial_number FROM device_users WHERE user_id LIKE {pattern} ESCAPE '\\')"
                    )
                } else {
                    String::new()
                };
                format!(
                    "d.rowid IN (SELECT rowid FROM devices_search WHERE devices_search MATCH {phrase}{users})"
                )
            }
            Dialect::Sqlite => {
                // Under three characters (no trigram to look up), or a common text: a scan.
                let like = |column: &str| format!("{column} LIKE {pattern} ESCAPE '\\'");
                let mut any = vec![like("d.serial_number"), like("d.mac"), like("d.station")];
                if personal {
                    any.push(like("d.assigned_email"));
                    any.push(format!(
                        "EXISTS (SELECT 1 FROM device_users u WHERE u.serial_number = d.serial_number AND {})",
                        like("u.user_id")
                    ));
                }
                format!("({})", any.join(" OR "))
            }
            Dialect::Postgres => {
                // One OR over the columns: the planner combines their trigram indexes for a
                // rare text (a bitmap OR), or reads in list order and stops early for a common
                // one. Users' ids come in as a list computed once (= ANY, on the primary key).
                self.indexed = true;
                let mut any: Vec<String> = ["d.serial_number", "d.mac", "d.station"]
                    .iter()
                    .map(|c| format!("{c} ILIKE {pattern}"))
                    .collect();
                if personal {
                    any.push(format!("d.assigned_email ILIKE {pattern}"));
                    any.push(format!(
                        "d.serial_number = ANY (ARRAY(SELECT serial_number FROM device_users WHERE user_id ILIKE {pattern}))"
                    ));
                }
                format!("({})", any.join(" OR "))
            }
        };
        self.clauses.push(clause);
    }
}

fn sort_column(sort: DeviceSort) -> &'static str {
    match sort {
        DeviceSort::Created => "d.created_at",
        DeviceSort::SerialNumber => "d.serial_number",
        DeviceSort::Status => "d.status",
        DeviceSort::Board => "d.board",
        DeviceSort::Batch => "b.name",
        DeviceSort::Flashed => "d.flashed_at",
    }
}

impl Listing {
    /// Counts matches up to [`COUNT_CAP`] + 1 (the query text; `devices d` and the filter).
    pub fn count_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM (SELECT 1 FROM devices d {} LIMIT {}) counted",
            self.filter,
            COUNT_CAP + 1
        )
    }

    /// `(total, capped)` from what [`Listing::count_sql`] counted.
    pub fn total(counted: i64) -> (i64, bool) {
        (counted.min(COUNT_CAP), counted > COUNT_CAP)
    }
}

/// The query for one page of `f`; `scan_text`: look for the text by reading the list (SQLite,
/// a text the probe found common), not through its index.
pub(crate) fn listing(f: &DeviceFilter, dialect: Dialect, scan_text: bool) -> Result<Listing> {
    let mut b = Builder {
        dialect,
        clauses: Vec::new(),
        args: Vec::new(),
        indexed: false,
        scan_text,
        probe: None,
    };
    b.equal("d.status", f.status.map(Status::as_str));
    b.equal("d.hw_type", f.hw_type.as_deref());
    b.equal("d.board", f.board.as_deref());
    if let Some(batch) = &f.batch {
        let p = b.bind(batch.clone());
        b.clauses.push(format!(
            "d.batch_id = (SELECT id FROM batches WHERE name = {p})"
        ));
    }
    if let Some(from) = f.created_from.as_deref() {
        let p = b.bind(date_bound(from, false)?);
        b.clauses.push(format!("d.created_at >= {p}"));
    }
    if let Some(to) = f.created_to.as_deref() {
        let p = b.bind(date_bound(to, true)?);
        b.clauses.push(format!("d.created_at < {p}"));
    }
    let only_text = b.clauses.is_empty();
    if let Some(text) = f.text.as_deref().filter(|t| !t.is_empty()) {
        b.text(text, f.personal);
    }
    let sort = f.sort.unwrap_or_default();
    let descending = f.desc.unwrap_or(sort.descending_by_default());
    // SQLite's order of NULLs (first going up, last going down) on both engines; only the
    // flash time can be NULL, and the others keep matching their indexes.
    let direction = match (dialect, descending, sort == DeviceSort::Flashed) {
        (Dialect::Postgres, true, true) => "DESC NULLS LAST",
        (Dialect::Postgres, false, true) => "ASC NULLS FIRST",
        (_, true, _) => "DESC",
        (_, false, _) => "ASC",
    };
    let filter = if b.clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", b.clauses.join(" AND "))
    };
    Ok(Listing {
        filter,
        indexed: b.indexed,
        args: b.args,
        order: format!("{} {direction}, d.serial_number", sort_column(sort)),
        sorted_order: format!("+{} {direction}, +d.serial_number", sort_column(sort)),
        probe: b.probe,
        only_text,
        limit: f.limit.unwrap_or(100).clamp(1, 1000),
        offset: f.offset.unwrap_or(0),
    })
}
