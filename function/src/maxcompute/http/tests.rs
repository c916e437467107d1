//! The HTTP layer: URLs with bare flags, both error body formats.

use super::*;

#[test]
fn urls_keep_bare_flags_and_encode_values() {
    let base = Url::parse("http://127.0.0.1:9/api").unwrap();
    let url = build_url(
        &base,
        "/projects/p/tables/t",
        &[
            ("uploads".into(), String::new()),
            ("partition".into(), "ds=1,hr=2".into()),
        ],
        "p",
    );
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9/api/projects/p/tables/t?uploads&partition=ds%3D1%2Chr%3D2&curr_project=p"
    );
}

#[test]
fn parses_both_error_formats() {
    let xml = b"<?xml version=\"1.0\"?><Error><Code>NoSuchObject</Code><Message>gone</Message><RequestId>r1</RequestId><HostId>h</HostId></Error>";
    let err = parse_error("get", StatusCode::NOT_FOUND, &HeaderMap::new(), xml);
    assert_eq!(err.code(), Some("NoSuchObject"));
    let json = br#"{"Code":"NoSuchPartition","Message":"missing"}"#;
    let err = parse_error("put", StatusCode::NOT_FOUND, &HeaderMap::new(), json);
    assert_eq!(err.code(), Some("NoSuchPartition"));
    let err = parse_error("x", StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
    assert_eq!(err.code(), Some("BadGateway"));
    assert!(err.is_retryable());
}

#[test]
fn retry_delays_double_from_the_base_to_the_cap_with_jitter_in_the_second_half() {
    let policy = RetryPolicy::default();
    let ms = |retry, jitter| policy.delay(retry, jitter).as_millis();
    assert_eq!(ms(1, 0.0), 250);
    assert_eq!(ms(2, 0.0), 500);
    assert_eq!(ms(3, 0.0), 1_000);
    assert_eq!(ms(1, 1.0), 125);
    assert_eq!(ms(3, 0.5), 750);
    assert_eq!(ms(9, 0.0), 64_000);
    assert_eq!(ms(1_000, 0.0), 64_000);
    assert_eq!(ms(1_000, 1.0), 32_000);
    assert_eq!(ms(0, 0.0), 250);
    assert_eq!(ms(2, -3.0), 500, "jitter is clamped");
    for _ in 0..1_000 {
        let d = policy.delay(4, rand::random::<f64>()).as_millis();
        assert!((1_000..=2_000).contains(&d), "{d}");
    }
}

#[test]
fn refuses_plain_http_off_loopback() {
    let ok = |u: &str, allow| check_endpoint(&Url::parse(u).unwrap(), allow).is_ok();
    assert!(ok(
        "https://service.cn-hangzhou.maxcompute.aliyun.com/api",
        false
    ));
    assert!(ok("http://127.0.0.1:1/api", false));
    assert!(ok("http://localhost:1/api", false));
    assert!(ok("http://[::1]:1/api", false));
    assert!(!ok("http://example.com/api", false));
    assert!(ok("http://example.com/api", true));
}
