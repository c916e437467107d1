//! Unit tests of the router: templates, formats, tokens, and the day memo against routing
//! without it.

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

#[test]
fn the_day_memo_routes_every_row_as_routing_it_alone_does() {
    use rand::{Rng, SeedableRng};
    let templates = [
        ("ds={ts:%Y%m%d}", true),
        ("ds={ts}", true),
        ("ds=x{ts:%Y-%m-%d}_{d:%b%y},tag=${yyyymmdd}", true),
        ("ds={ts:%Y%m%d},hh={ts:%H}", false),
        ("ds={ts:%j%C}", true),
        ("ds={ts:%s}", false),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Instants clustered on a few days, on both sides of midnight and of the epoch.
    let days = [-1_i64, 0, 19_844, 19_845];
    let cell = |rng: &mut rand::rngs::StdRng| {
        let ms = days[rng.random_range(0..days.len())] * 86_400_000
            + rng.random_range(-2_000_i64..2_000)
            + if rng.random_bool(0.5) { 43_200_000 } else { 0 };
        match rng.random_range(0..10) {
            0 => Cell::Null,
            1 => Cell::String("a,b".into()),
            2 => Cell::String("20240501".into()),
            3 => Cell::Date(ms.div_euclid(86_400_000) as i32),
            4 => Cell::Int(ms),
            5 => Cell::Timestamp(Instant {
                seconds: ms.div_euclid(1000),
                nanos: if rng.random_bool(0.1) {
                    1_500_000_000
                } else {
                    rng.random_range(0..1_000_000_000)
                },
            }),
            6 => Cell::Boolean(true),
            _ => Cell::Datetime(ms),
        }
    };
    for (template, daily) in templates {
        let keys: Vec<String> = if template.contains("hh=") {
            vec!["ds".into(), "hh".into()]
        } else if template.contains("tag=") {
            vec!["ds".into(), "tag".into()]
        } else {
            vec!["ds".into()]
        };
        let r = Router::new(template, &keys, &["ts".into(), "d".into()], t()).unwrap();
        assert_eq!(r.daily.is_some(), daily, "{template}");
        let mut memo = DayMemo::default();
        let mut out = String::new();
        for _ in 0..5_000 {
            let cells = [cell(&mut rng), cell(&mut rng)];
            let with = r
                .route_into(&cells, &mut out, &mut memo)
                .map(|()| out.clone());
            assert_eq!(with, r.route(&cells), "{template} {cells:?}");
        }
        if let Some(columns) = &r.daily {
            // A row on the day of the row before is answered from the memo.
            let day = 19_844 * 86_400_000;
            let first = [Cell::Datetime(day + 5), Cell::Datetime(day)];
            r.route_into(&first, &mut out, &mut memo).unwrap();
            let later = [Cell::Datetime(day + 80_000_000), Cell::Datetime(day + 1)];
            let mut recalled = String::new();
            assert!(memo.recall(columns, &later, &mut recalled), "{template}");
            assert_eq!(recalled, r.route(&later).unwrap(), "{template}");
        }
    }
}
