use super::*;

use super::MINIMAL_EXAMPLE as MINIMAL;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MINIMAL, []).unwrap();
    assert_eq!(c.kafka.cluster, "default");
    assert_eq!(c.kafka.fetch_max_wait_ms, 10);
    assert_eq!(c.limits.error_limit, ErrorLimit::Count(0));
    assert_eq!(
        c.transforms[0].settings["columns"].as_str(),
        Some("id:bigint")
    );
    assert_eq!(c.maxcompute.access_key, SecretRef::Env("KEY".into()));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let text = MINIMAL.replace("[staging]", "[staging]\nbuckit = \"x\"");
    let err = Config::parse(&text, []).unwrap_err().to_string();
    assert!(err.contains("buckit"), "{err}");
}

#[test]
fn wrong_types_are_errors() {
    let text = MINIMAL.replace("topics = [\"vehicles\"]", "topics = \"vehicles\"");
    let err = Config::parse(&text, []).unwrap_err().to_string();
    assert!(err.contains("topics") || err.contains("sequence"), "{err}");
}

#[test]
fn environment_overrides() {
    let env = [
        (
            "K2MC__KAFKA__TOPICS".to_owned(),
            "[\"a\", \"b\"]".to_owned(),
        ),
        ("K2MC__STAGING__BUCKET".to_owned(), "other".to_owned()),
        (
            "K2MC__LIMITS__ERROR_LIMIT".to_owned(),
            "\"2.5%\"".to_owned(),
        ),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let c = Config::parse(MINIMAL, env).unwrap();
    assert_eq!(c.kafka.topics, vec!["a", "b"]);
    assert_eq!(c.staging.bucket, "other");
    assert_eq!(c.limits.error_limit, ErrorLimit::Ratio(0.025));
    let bad = [("K2MC__KAFKA__NOPE".to_owned(), "1".to_owned())];
    assert!(
        Config::parse(MINIMAL, bad)
            .unwrap_err()
            .to_string()
            .contains("nope")
    );
}

#[test]
fn error_limits() {
    assert!(!ErrorLimit::Count(0).exceeded(0, 10));
    assert!(ErrorLimit::Count(0).exceeded(1, 10));
    assert!(!ErrorLimit::Ratio(0.1).exceeded(1, 10));
    assert!(ErrorLimit::Ratio(0.1).exceeded(2, 10));
    let text = MINIMAL.replace("[staging]", "[limits]\nerror_limit = \"lots\"\n[staging]");
    assert!(
        Config::parse(&text, [])
            .unwrap_err()
            .to_string()
            .contains("error_limit")
    );
}

/// The README's example config is a valid config.
#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../../../README.md");
    let start = readme.find("```toml\n").map(|i| i + "```toml\n".len());
    let text = start.and_then(|s| readme[s..].find("```").map(|e| &readme[s..s + e]));
    let c = Config::parse(text.unwrap_or_default(), []).unwrap();
    assert_eq!(
        c.kafka.sasl.map(|s| s.mechanism),
        Some(SaslMechanism::ScramSha512)
    );
    assert!(c.kafka.tls.is_some_and(|t| t.ca_file.is_none()));
    assert_eq!(c.limits.error_limit, ErrorLimit::Ratio(0.001));
    assert_eq!(c.transforms.len(), 2);
}

/// SASL PLAIN to a remote broker needs TLS; on loopback (the local stack) it may go without.
#[test]
fn plain_sasl_without_tls_is_refused_off_this_machine() {
    let sasl = |brokers: &str| {
        let text = MINIMAL.replace(r#"["127.0.0.1:9092"]"#, brokers).replace(
            "topics = [\"vehicles\"]",
            "topics = [\"vehicles\"]\nsasl = { mechanism = \"PLAIN\", username = \"u\", password = \"env:P\" }",
        );
        Config::parse(&text, [])
    };
    let e = sasl(r#"["kafka.example.com:9092"]"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config key kafka.sasl.mechanism: plain would send the password unencrypted"),
        "{e}"
    );
    assert!(sasl(r#"["127.0.0.1:9092", "localhost:9093", "[::1]:9094"]"#).is_ok());
    let with_tls = Config::parse(
        &MINIMAL.replace(r#"["127.0.0.1:9092"]"#, r#"["kafka.example.com:9092"]"#).replace(
            "topics = [\"vehicles\"]",
            "topics = [\"vehicles\"]\ntls = {}\nsasl = { mechanism = \"plain\", username = \"u\", password = \"p\" }",
        ),
        [],
    );
    assert!(with_tls.is_ok(), "{with_tls:?}");
}

/// The CA comes from one place; a client certificate comes with its key. Every secret reference
/// of `[kafka.tls]` is listed for resolution.
#[test]
fn tls_settings_are_checked_and_their_secrets_listed() {
    let tls = |table: &str| {
        Config::parse(
            &MINIMAL.replace(
                "topics = [\"vehicles\"]",
                &format!("topics = [\"vehicles\"]\ntls = {table}"),
            ),
            [],
        )
    };
    let e = tls(r#"{ ca_file = "ca.pem", ca = "env:CA" }"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config key kafka.tls.ca: set either"), "{e}");
    let e = tls(r#"{ client_certificate = "env:CERT" }"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("needs both kafka.tls.client_certificate and kafka.tls.client_key"),
        "{e}"
    );
    let c = tls(r#"{ ca = "secretsmanager:ca#certificate", client_certificate = "secretsmanager:mtls#certificate", client_key = "secretsmanager:mtls#privateKey" }"#).unwrap();
    let keys: Vec<&str> = c.secret_refs().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "maxcompute.access_id",
            "maxcompute.access_key",
            "kafka.tls.ca",
            "kafka.tls.client_certificate",
            "kafka.tls.client_key"
        ]
    );
    // The same keys through the environment, as the deployment template sets them.
    let c = Config::parse(
        &MINIMAL.replace(
            "topics = [\"vehicles\"]",
            "topics = [\"vehicles\"]\ntls = {}",
        ),
        [
            (
                "K2MC__KAFKA__TLS__CLIENT_KEY".to_owned(),
                "secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:m#privateKey".to_owned(),
            ),
            (
                "K2MC__KAFKA__TLS__CLIENT_CERTIFICATE".to_owned(),
                "secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:m#certificate".to_owned(),
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        c.kafka.tls.and_then(|t| t.client_key),
        Some(SecretRef::SecretsManager {
            id: "arn:aws:secretsmanager:us-east-1:1:secret:m".into(),
            field: Some("privateKey".into())
        })
    );
}

#[test]
fn compression_is_lz4_where_bytes_are_free_and_deflate_where_they_are_billed() {
    let with = |env: Vec<(&str, &str)>| {
        Config::parse(
            MINIMAL,
            env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
    };
    let endpoint = |url: &str| with(vec![("K2MC__MAXCOMPUTE__ENDPOINT", url)]).unwrap();
    assert_eq!(
        endpoint("https://service.cn-hangzhou.maxcompute.aliyun.com/api").compression(),
        Compression::Deflate
    );
    assert_eq!(
        endpoint("http://service.cn-hangzhou-vpc.maxcompute.aliyun-inc.com/api").compression(),
        Compression::Lz4
    );
    assert_eq!(
        endpoint("http://127.0.0.1:9/api").compression(),
        Compression::Lz4
    );
    let set = |v: &str| {
        with(vec![
            ("K2MC__MAXCOMPUTE__ENDPOINT", "http://127.0.0.1:9/api"),
            ("K2MC__LIMITS__COMPRESSION", v),
        ])
    };
    assert_eq!(set("deflate").unwrap().compression(), Compression::Deflate);
    assert_eq!(set("lz4").unwrap().compression(), Compression::Lz4);
    for bad in ["zstd", "none"] {
        let err = set(bad).unwrap_err().to_string();
        assert!(
            err.contains(bad)
                && err.contains("auto")
                && err.contains("lz4")
                && err.contains("deflate"),
            "{err}"
        );
    }
}

#[test]
fn payloads_go_unsigned_only_to_s3_over_tls_or_loopback() {
    let signs = |staging: &str| {
        let text = MINIMAL.replace("[staging]\n", &format!("[staging]\n{staging}\n"));
        Config::parse(&text, []).unwrap().staging.signs_payload()
    };
    assert!(!signs(""), "AWS S3's own endpoint is HTTPS");
    assert!(!signs(r#"endpoint = "https://minio.example.com:9000""#));
    assert!(!signs(r#"endpoint = "http://127.0.0.1:9000""#));
    assert!(!signs(r#"endpoint = "http://[::1]:9000""#));
    assert!(!signs(r#"endpoint = "http://localhost:9000""#));
    // Plain HTTP across a network: the signature is the body's only integrity check.
    assert!(signs(r#"endpoint = "http://minio.internal:9000""#));
    assert!(signs(r#"endpoint = "http://10.0.0.5:9000""#));
    // OSS's S3 API requires the body's SHA-256 on PUT, over TLS too.
    assert!(signs(
        "endpoint = \"https://oss-cn-hangzhou.aliyuncs.com\"\nprovider = \"oss\""
    ));
    assert!(signs(
        "endpoint = \"http://127.0.0.1:9000\"\nprovider = \"oss\""
    ));
    // `always` signs everywhere.
    assert!(signs("payload_signing = \"always\""));
    assert!(signs(
        "endpoint = \"http://127.0.0.1:9000\"\npayload_signing = \"always\""
    ));
    let err = Config::parse(
        &MINIMAL.replace("[staging]\n", "[staging]\npayload_signing = \"never\"\n"),
        [],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("never") || err.contains("payload_signing"),
        "{err}"
    );
}

#[test]
fn parallel_blocks_default_to_two_and_a_bad_count_names_the_key_and_the_range() {
    assert_eq!(Config::parse(MINIMAL, []).unwrap().load.parallel_blocks, 2);
    let with = |n: &str| {
        MINIMAL.replace(
            "[staging]",
            &format!("[load]\nparallel_blocks = {n}\n[staging]"),
        )
    };
    assert_eq!(
        Config::parse(&with("1"), []).unwrap().load.parallel_blocks,
        1
    );
    for bad in ["0", "17"] {
        let err = Config::parse(&with(bad), []).unwrap_err().to_string();
        assert!(
            err.contains("load.parallel_blocks") && err.contains("1 to 16"),
            "{err}"
        );
    }
}

#[test]
fn transform_calls_default_to_a_mebibyte_and_a_zero_bound_names_the_key() {
    let limits = Config::parse(MINIMAL, []).unwrap().limits;
    assert_eq!(
        (limits.transform_records, limits.transform_bytes),
        (1000, 1 << 20)
    );
    let with = |line: &str| MINIMAL.replace("[staging]", &format!("[limits]\n{line}\n[staging]"));
    assert_eq!(
        Config::parse(&with("transform_bytes = 65536"), [])
            .unwrap()
            .limits
            .transform_bytes,
        65536
    );
    for key in ["transform_bytes", "transform_records"] {
        let err = Config::parse(&with(&format!("{key} = 0")), [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("limits.{key}")) && err.contains("positive"),
            "{err}"
        );
    }
}
