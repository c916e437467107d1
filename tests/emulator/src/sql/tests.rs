//! The SQL subset parser's tests: every statement form the emulator accepts.
use super::*;

#[test]
fn parses_pyodps_create_table() {
    let sql = "CREATE TABLE IF NOT EXISTS p.`t` (\n  `id` BIGINT COMMENT 'the id',\n  `m` MAP<STRING,STRUCT<`a`:DECIMAL(38,18),b:ARRAY<INT>>> NOT NULL\n)\nCOMMENT 'x'\nPARTITIONED BY (\n  `ds` STRING\n)\nLIFECYCLE 7;";
    let Statement::CreateTable {
        name,
        columns,
        partition_keys,
        lifecycle,
        ..
    } = parse(sql).unwrap()
    else {
        panic!()
    };
    assert_eq!(name.project.as_deref(), Some("p"));
    assert_eq!(
        columns[1].ty.to_string(),
        "map<string,struct<a:decimal(38,18),b:array<int>>>"
    );
    assert!(!columns[1].nullable);
    assert_eq!(partition_keys[0].name, "ds");
    assert_eq!(lifecycle, Some(7));
}

#[test]
fn parses_the_rest_of_the_subset() {
    assert!(matches!(
        parse("drop table if exists t").unwrap(),
        Statement::DropTable {
            if_exists: true,
            ..
        }
    ));
    let Statement::AddPartitions {
        partitions,
        if_not_exists,
        ..
    } = parse("ALTER TABLE p.`t` ADD IF NOT EXISTS PARTITION (ds='1',hr='2');").unwrap()
    else {
        panic!()
    };
    assert!(if_not_exists);
    assert_eq!(partitions[0].tunnel_form(), "ds=1,hr=2");
    let Statement::Select {
        projection,
        filter,
        limit,
        ..
    } = parse("SELECT count(*) FROM t WHERE ds='20240101' AND hr='00' LIMIT 5").unwrap()
    else {
        panic!()
    };
    assert_eq!(projection, Projection::CountStar);
    assert_eq!(filter.len(), 2);
    assert_eq!(limit, Some(5));
}

#[test]
fn errors_carry_code_and_position() {
    for bad in [
        "SELEC 1",
        "select * from",
        "create table t (a bigin)",
        "select * from t where",
        "'",
        "insert into t values (1)",
        "select a from t; drop",
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.code, PARSE_ERROR, "{bad}");
        assert!(err.message.starts_with('['), "{bad}: {}", err.message);
    }
    assert!(parse("SELEC 1").unwrap_err().message.starts_with("[1,1]"));
}

#[test]
fn add_columns_parses_with_and_without_if_not_exists() {
    let Statement::AddColumns {
        name,
        if_not_exists,
        columns,
    } = parse("ALTER TABLE t ADD COLUMNS IF NOT EXISTS (`coupon` string, tags array<string>);")
        .unwrap()
    else {
        panic!("not ADD COLUMNS");
    };
    assert_eq!(name.table, "t");
    assert!(if_not_exists);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["coupon", "tags"]);
    assert!(matches!(
        parse("ALTER TABLE t ADD COLUMNS (c bigint)").unwrap(),
        Statement::AddColumns {
            if_not_exists: false,
            ..
        }
    ));
}
