//! Destination partitions (`docs/architecture.md`, "Destination partitions"): a template such as `ds={event_time:%Y%m%d},hh={event_time:%H}`
//! picks a row's partition from one of its columns (event time, so late records land where they
//! belong), and `ds=${yyyymmdd}` (DataWorks' tokens, or `${bizdate}`) from the trigger time. Pure.

use std::sync::LazyLock;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Duration, Utc};

use super::encode::RowError;
use crate::transform::bindings::Cell;

mod day;

pub(crate) use day::DayMemo;

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
    /// When every column the template reads has a format no finer than a day: those columns
    /// (index, whether a format is given), in template order, for the [`DayMemo`].
    daily: Option<Vec<(usize, bool)>>,
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
        let daily = keys
            .iter()
            .flat_map(|(_, pieces)| pieces)
            .filter_map(|piece| match piece {
                Piece::Column { index, format, .. } => Some((*index, format.as_ref())),
                Piece::Text(_) => None,
            })
            .map(|(index, format)| {
                let TimeFormat(items) = format.unwrap_or(&DAY);
                day::daily(items).then_some((index, format.is_some()))
            })
            .collect::<Option<Vec<_>>>()
            .filter(|columns| !columns.is_empty());
        Ok(Router { keys, daily })
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
    #[cfg(test)]
    pub(crate) fn route(&self, cells: &[Cell]) -> Result<String, RowError> {
        let mut out = String::new();
        self.route_into(cells, &mut out, &mut DayMemo::default())?;
        Ok(out)
    }

    /// [`Router::route`] into `out` (cleared first), the encoder keeping one buffer for every row
    /// rather than a new string each, and one memo of the last row's days.
    pub(crate) fn route_into(
        &self,
        cells: &[Cell],
        out: &mut String,
        memo: &mut DayMemo,
    ) -> Result<(), RowError> {
        if let Some(columns) = &self.daily
            && memo.recall(columns, cells, out)
        {
            return Ok(());
        }
        self.build(cells, out)?;
        if self.daily.is_some() {
            memo.remember(out);
        }
        Ok(())
    }

    fn build(&self, cells: &[Cell], out: &mut String) -> Result<(), RowError> {
        out.clear();
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
                        render(cell, format.as_ref(), out).map_err(|why| {
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
        Ok(())
    }
}

/// The instant of a cell the router writes as a time (an integer is milliseconds since the epoch
/// when the template gives its column a format): `None` for a cell written otherwise,
/// `Some(None)` for a time out of chrono's range. The [`DayMemo`] reads days through it too.
fn time_of(cell: &Cell, formatted: bool) -> Option<Option<DateTime<Utc>>> {
    match cell {
        Cell::Datetime(ms) => Some(DateTime::from_timestamp_millis(*ms)),
        Cell::Timestamp(t) => Some(DateTime::from_timestamp(t.seconds, t.nanos)),
        Cell::Date(d) => Some(DateTime::from_timestamp(i64::from(*d) * 86_400, 0)),
        Cell::Int(n) if formatted => Some(DateTime::from_timestamp_millis(*n)),
        _ => None,
    }
}

fn render(cell: &Cell, format: Option<&TimeFormat>, out: &mut String) -> Result<(), String> {
    use std::fmt::Write as _;
    let time = match (time_of(cell, format.is_some()), cell) {
        (Some(time), _) => time,
        (None, Cell::Null) => return Err("is null".into()),
        (None, Cell::String(s)) if format.is_none() => {
            out.push_str(s);
            return Ok(());
        }
        (None, Cell::Int(n)) => {
            let _ = write!(out, "{n}");
            return Ok(());
        }
        (None, Cell::Boolean(b)) => {
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
mod tests;
