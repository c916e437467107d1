//! The encode stage's memo of the last partition spec built from time columns, for templates
//! whose time formats name nothing finer than a day (`ds={event_time:%Y%m%d}`, the common one):
//! a row on the same UTC day as the row before gets the same spec without chrono formatting it
//! again, which was about 1 % of the function's CPU at 1 KB records (`docs/bench/README.md`,
//! "The encoder's row path").

use chrono::format::{Fixed, Item, Numeric};

use super::time_of;
use crate::transform::bindings::Cell;

/// Whether a format's output is the same for every instant of one UTC day: only the year, the
/// month, the day and text. Week numbers and weekdays are left out (they are too, but nobody
/// partitions by them, and the list stays one a reader can check at a glance).
pub(super) fn daily(items: &[Item<'_>]) -> bool {
    items.iter().all(|item| match item {
        Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => true,
        Item::Numeric(n, _) => matches!(
            n,
            Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::Month
                | Numeric::Day
                | Numeric::Ordinal
        ),
        Item::Fixed(f) => matches!(f, Fixed::ShortMonthName | Fixed::LongMonthName),
        Item::Error => false,
    })
}

/// The UTC day a time cell falls on, for the cells the router writes as a time ([`time_of`]);
/// `None` for every other cell and for a time chrono cannot hold (they take the router's own path,
/// errors included).
fn day_of(cell: Option<&Cell>, formatted: bool) -> Option<i64> {
    let time = time_of(cell?, formatted)??;
    Some(time.timestamp().div_euclid(86_400))
}

/// The days of the last routed row's time columns and the spec they gave.
#[derive(Debug, Default)]
pub(crate) struct DayMemo {
    days: Vec<i64>,
    /// The days of the row being routed; complete when every time column had one.
    scratch: Vec<i64>,
    complete: bool,
    spec: Option<String>,
}

impl DayMemo {
    /// Writes the remembered spec into `out` when the row's time columns (`(index, formatted)`)
    /// fall on the remembered days.
    pub(super) fn recall(
        &mut self,
        columns: &[(usize, bool)],
        cells: &[Cell],
        out: &mut String,
    ) -> bool {
        self.scratch.clear();
        self.complete = false;
        for &(index, formatted) in columns {
            match day_of(cells.get(index), formatted) {
                Some(day) => self.scratch.push(day),
                None => return false,
            }
        }
        self.complete = true;
        match &self.spec {
            Some(spec) if self.scratch == self.days => {
                out.clear();
                out.push_str(spec);
                true
            }
            _ => false,
        }
    }

    /// Remembers the spec the router built for the row [`DayMemo::recall`] last looked at.
    pub(super) fn remember(&mut self, spec: &str) {
        if !self.complete {
            return;
        }
        std::mem::swap(&mut self.days, &mut self.scratch);
        let kept = self.spec.get_or_insert_with(String::new);
        kept.clear();
        kept.push_str(spec);
    }
}
