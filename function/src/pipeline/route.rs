//! Destination partitions (`docs/architecture.md`, "Destination partitions"): a template such as `ds={event_time:%Y%m%d},hh={event_time:%H}`
//! picks a row's partition from one of its columns (event time, so late records land where they
//! belong), and `ds=${yyyymmdd}` (DataWorks' tokens, or `${bizdate}`) from the trigger time. Pure.

use std::sync::LazyLock;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Duration, Utc};

use super::encode::RowError;
use crate::transform::bindings::Cell;

/// One piece of a partition value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A row column (by index in the chain's output), with an optional strftime format.
    Column {
        index: usize,
        name: String,
        format: Option<TimeFormat>,
    },
}

/// A strftime format, read once when the template is parsed: reading the format text again for
/// every row was about 1 % of the function's CPU (`docs/bench/README.md`, "Per-record
/// leftovers of the profile"), and a format that cannot be read is a configuration error, not a dead letter
/// per row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TimeFormat(Vec<Item<'static>>);

impl TimeFormat {
    fn parse(text: &str) -> Option<TimeFormat> {
        StrftimeItems::new(text)
            .parse_to_owned()
            .ok()
            .map(TimeFormat)
    }
}

/// A time column's value without a format: the day (`20240501`).
static DAY: LazyLock<TimeFormat> =
    LazyLock::new(|| TimeFormat::parse("%Y%m%d").unwrap_or(TimeFormat(Vec::new())));

/// A parsed template: partition keys and how each value is made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    keys: Vec<(String, Vec<Piece>)>,
}

/// The destination-partition template cannot be applied (to the table's keys, the chain's
/// columns or the trigger's time): every partition of the invocation fails with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("destination partition: {reason}")]
pub struct RouteError {
    reason: String,
}

fn err(reason: impl Into<String>) -> RouteError {
    RouteError {
        reason: reason.into(),
    }
}

/// DataWorks time tokens in `${…}` replaced from `time`.
fn dataworks(token: &str, time: DateTime<Utc>) -> Result<String, RouteError> {
    if token == "bizdate" {
        return Ok((time - Duration::days(1)).format("%Y%m%d").to_string());
    }
    let mut out = String::new();
    let mut rest = token;
    while !rest.is_empty() {
        let (piece, len) = if rest.starts_with("yyyy") {
            (time.format("%Y").to_string(), 4)
        } else if rest.starts_with("hh24") {
            (time.format("%H").to_string(), 4)
        } else if rest.starts_with("mm") {
            (time.format("%m").to_string(), 2)
        } else if rest.starts_with("dd") {
            (time.format("%d").to_string(), 2)
        } else if rest.starts_with("hh") {
            (time.format("%H").to_string(), 2)
        } else if rest.starts_with("mi") {
            (time.format("%M").to_string(), 2)
        } else if rest.starts_with("ss") {
            (time.format("%S").to_string(), 2)
        } else {
            let c = rest.chars().next().unwrap_or('-');
            if c.is_ascii_alphanumeric() {
                return Err(err(format!(
                    "${{{token}}}: unknown time token at {rest:?}; use yyyy, mm, dd, hh24, mi, ss or bizdate"
                )));
            }
            (c.to_string(), c.len_utf8())
        };
        out.push_str(&piece);
        rest = &rest[len..];
    }
    Ok(out)
}

impl Router {
    /// Parses `template` against the table's partition keys and the chain's output columns;
    /// `${…}` tokens are resolved now from the trigger time.
    pub(crate) fn new(
        template: &str,
        partition_keys: &[String],
        columns: &[String],
        trigger_time: DateTime<Utc>,
    ) -> Result<Router, RouteError> {
        let mut keys = Vec::new();
        for part in template.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("{part:?} is not key=value in maxcompute.partition")))?;
            let mut pieces = Vec::new();
            let mut rest = value.trim();
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix("${") {
                    let end = after
                        .find('}')
                        .ok_or_else(|| err(format!("unclosed ${{ in {part:?}")))?;
                    pieces.push(Piece::Text(dataworks(&after[..end], trigger_time)?));
                    rest = &after[end + 1..];
                } else if let Some(after) = rest.strip_prefix('{') {
                    let end = after
                        .find('}')
                        .ok_or_else(|| err(format!("unclosed {{ in {part:?}")))?;
                    let inner = &after[..end];
                    let (name, format) = match inner.split_once(':') {
                        Some((n, f)) => {
                            let format = TimeFormat::parse(f).ok_or_else(|| {
                                err(format!(
                                    "{{{inner}}} in maxcompute.partition: {f:?} is not a strftime format; use specifiers such as %Y%m%d or %H"
                                ))
                            })?;
                            (n.trim(), Some(format))
                        }
                        None => (inner.trim(), None),
                    };
                    let index = columns
                        .iter()
                        .position(|c| c.eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            err(format!(
                                "{{{name}}} in maxcompute.partition is not a column the transforms emit ({})",
                                columns.join(", ")
                            ))
                        })?;
                    pieces.push(Piece::Column {
                        index,
                        name: name.to_owned(),
                        format,
                    });
                    rest = &after[end + 1..];
                } else {
                    let end = rest
                        .find(['{', '$'])
                        .filter(|&i| i > 0)
                        .unwrap_or(rest.len());
                    pieces.push(Piece::Text(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
            keys.push((key.trim().to_ascii_lowercase(), pieces));
        }
        let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        let want: Vec<String> = partition_keys
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        if names != want {
            return Err(err(format!(
                "maxcompute.partition names keys [{}] but the table is partitioned by [{}]; write {}",
                names.join(", "),
                want.join(", "),
                if want.is_empty() {
                    "an empty partition (\"\")".to_owned()
                } else {
                    want.iter()
                        .map(|k| format!("{k}=…"))
                        .collect::<Vec<_>>()
                        .join(",")
                }
            )));
        }
        Ok(Router { keys })
    }

    /// The row columns the template reads.
    pub(crate) fn columns(&self) -> Vec<String> {
        self.keys
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter_map(|p| match p {
                Piece::Column { name, .. } => Some(name.clone()),
                Piece::Text(_) => None,
            })
            .collect()
    }

    /// The Tunnel-form partition spec of a row (`ds=20240501,hh=07`), or why there is none.
    pub(crate) fn route(&self, cells: &[Cell]) -> Result<String, RowError> {
        let mut out = String::new();
        for (i, (key, pieces)) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            let start = out.len();
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Column {
                        index,
                        name,
                        format,
                    } => {
                        let cell = cells.get(*index).unwrap_or(&Cell::Null);
                        render(cell, format.as_ref(), &mut out).map_err(|why| {
                            RowError::new(
                                "bad-partition",
                                format!("partition column {name}: {why}"),
                            )
                        })?;
                    }
                }
            }
            let value = &out[start..];
            if value.is_empty() || value.contains([',', '=', '/', '\'', '"']) {
                return Err(RowError::new(
                    "bad-partition",
                    format!("partition value {value:?} for {key} is empty or has , = / or quotes"),
                ));
            }
        }
        Ok(out)
    }
}

fn render(cell: &Cell, format: Option<&TimeFormat>, out: &mut String) -> Result<(), String> {
    use std::fmt::Write as _;
    let time = match cell {
        Cell::Datetime(ms) => DateTime::from_timestamp_millis(*ms),
        Cell::Timestamp(t) => DateTime::from_timestamp(t.seconds, t.nanos),
        Cell::Date(d) => DateTime::from_timestamp(i64::from(*d) * 86_400, 0),
        Cell::Int(n) if format.is_some() => DateTime::from_timestamp_millis(*n),
        Cell::Null => return Err("is null".into()),
        Cell::String(s) if format.is_none() => {
            out.push_str(s);
            return Ok(());
        }
        Cell::Int(n) => {
            let _ = write!(out, "{n}");
            return Ok(());
        }
        Cell::Boolean(b) => {
            let _ = write!(out, "{b}");
            return Ok(());
        }
        _ => {
            return Err(
                "cannot be a partition value (use a string, integer or time column)".into(),
            );
        }
    };
    let time = time.ok_or("is out of the time range")?;
    let TimeFormat(items) = format.unwrap_or(&DAY);
    write!(out, "{}", time.format_with_items(items.iter()))
        .map_err(|_| "cannot be written in the partition's time format".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::bindings::Instant;

    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T07:08:09Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn dynamic_from_event_time() {
        let r = Router::new(
            "ds={ts:%Y%m%d},hh={ts:%H}",
            &["ds".into(), "hh".into()],
            &["id".into(), "ts".into()],
            t(),
        )
        .unwrap();
        // Dynamic: the route depends on the row (the same template routes an hour later elsewhere).
        assert_eq!(r.columns(), ["ts", "ts"]);
        let cells = [
            Cell::Int(1),
            Cell::Timestamp(Instant {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        ];
        assert_eq!(r.route(&cells).unwrap(), "ds=20231114,hh=22");
        assert!(
            r.route(&[Cell::Int(1), Cell::Null])
                .unwrap_err()
                .message
                .contains("ts")
        );
    }

    #[test]
    fn formats_are_read_once_and_write_what_chrono_writes() {
        let ms = 1_714_547_289_123_i64;
        for f in ["%Y%m%d", "%Y-%m-%d", "%H", "%Y%m%d%H%M%S", "%j", "x%%y", ""] {
            let r = Router::new(
                &format!("ds={{ts:{f}}}x"),
                &["ds".into()],
                &["ts".into()],
                t(),
            )
            .unwrap();
            let want = DateTime::from_timestamp_millis(ms).unwrap().format(f);
            let got = r.route(&[Cell::Datetime(ms)]);
            if f.is_empty() {
                // Nothing but the text after it: still a value.
                assert_eq!(got.unwrap(), "ds=x");
            } else {
                assert_eq!(got.unwrap(), format!("ds={want}x"), "{f}");
            }
        }
        // A time column without a format is its day.
        let r = Router::new("ds={ts}", &["ds".into()], &["ts".into()], t()).unwrap();
        assert_eq!(r.route(&[Cell::Datetime(ms)]).unwrap(), "ds=20240501");
    }

    #[test]
    fn a_format_that_cannot_be_read_is_refused_with_the_template() {
        let e = Router::new("ds={ts:%Q}", &["ds".into()], &["ts".into()], t())
            .unwrap_err()
            .to_string();
        assert!(e.contains("{ts:%Q}") && e.contains("strftime"), "{e}");
    }

    #[test]
    fn static_dataworks_tokens() {
        let r = Router::new(
            "ds=${yyyymmdd},hh=${hh24}",
            &["ds".into(), "hh".into()],
            &[],
            t(),
        )
        .unwrap();
        // Static: every row, whatever its cells, goes to the trigger time's partition.
        assert!(r.columns().is_empty());
        assert_eq!(r.route(&[]).unwrap(), "ds=20240501,hh=07");
        assert_eq!(
            r.route(&[Cell::Null, Cell::Int(5)]).unwrap(),
            "ds=20240501,hh=07"
        );
        let b = Router::new("ds=${bizdate}", &["ds".into()], &[], t()).unwrap();
        assert_eq!(b.route(&[]).unwrap(), "ds=20240430");
    }

    #[test]
    fn keys_must_match_the_table() {
        let e = Router::new("dt=${yyyymmdd}", &["ds".into()], &[], t())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[ds]"), "{e}");
        let none = Router::new("", &[], &[], t()).unwrap();
        assert!(none.columns().is_empty());
        assert_eq!(none.route(&[Cell::Int(1)]).unwrap(), "");
        let e = Router::new("ds={nope}", &["ds".into()], &["a".into()], t())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
