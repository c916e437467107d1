//! Mutual TLS to the brokers end to end. Tansu sits behind a front that requires a client
//! certificate signed by the run's CA (tests/harness/tlsfront.rs) and advertises the front's
//! port, so every connection is TLS. `k2mc` gets the CA, the certificate chain and the key as
//! secret references (the fields of an event source mapping's `SERVER_ROOT_CA_CERTIFICATE` and
//! `CLIENT_CERTIFICATE_TLS_AUTH` secrets, here from the environment); without a certificate, with
//! one from another CA, or without the CA it is refused at the handshake, nothing lands, and the
//! error names the setting to fix. Then the right identity loads every record once.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::stack::{k2mc_env, shared_stack, start_tansu_advertising, write_config};
use harness::tlsfront::{self, Pki};
use harness::{shared_emulator, workspace_bin};
use rskafka::client::ClientBuilder;

use crate::case::{create_vehicle_table, landed_rows, produce_vehicles, rt, transforms_toml};

const MTLS: &str = "[kafka.tls]\nca = \"env:K2MC_TEST_KAFKA_CA\"\nclient_certificate = \"env:K2MC_TEST_KAFKA_CERT\"\nclient_key = \"env:K2MC_TEST_KAFKA_KEY\"\n";

/// Runs `k2mc run` with `config` against the front; returns (success, stderr, seconds).
fn run(
    config: &Path,
    bootstrap: &str,
    pki: &Pki,
    identity: &tlsfront::Identity,
) -> (bool, String, f64) {
    let started = Instant::now();
    let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
    cmd.args(["run", "--config"]).arg(config);
    for (k, v) in k2mc_env() {
        cmd.env(k, v);
    }
    cmd.env("K2MC__KAFKA__BOOTSTRAP", format!("[\"{bootstrap}\"]"))
        .env("K2MC_TEST_KAFKA_CA", &pki.ca)
        .env("K2MC_TEST_KAFKA_CERT", &identity.certificate)
        .env("K2MC_TEST_KAFKA_KEY", &identity.key);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed().as_secs_f64(),
    )
}

#[test]
fn mutual_tls_loads_every_record_once_and_refuses_the_wrong_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_port = listener.local_addr().unwrap().port();
    let broker = start_tansu_advertising(dir.path(), Some(front_port)).unwrap();
    let front = tlsfront::start(listener, broker.port, &pki).unwrap();
    let bootstrap = format!("127.0.0.1:{front_port}");
    let (topic, table) = ("t_mtls", "vehicle_mtls");

    let tls = Arc::new(pki.client_config().unwrap());
    let producer_bootstrap = bootstrap.clone();
    rt().block_on(async move {
        create_vehicle_table(shared_emulator().unwrap(), table).await;
        let client = ClientBuilder::new(vec![producer_bootstrap])
            .tls_config(tls)
            .build()
            .await
            .unwrap();
        client
            .controller_client()
            .unwrap()
            .create_topic(topic, 1, 1, 5_000)
            .await
            .unwrap();
        produce_vehicles(&client, topic, 0, 0..40, 3).await;
    });

    let write = |name: &str, extra: &str| {
        let path = dir.path().join(name);
        write_config(
            &path,
            shared_stack().unwrap(),
            &shared_emulator().unwrap().endpoint(),
            "mtls",
            &[topic],
            table,
            "ds={event_time:%Y%m%d}",
            &transforms_toml(),
            extra,
        )
        .unwrap();
        path
    };
    let mtls = write("mtls.toml", MTLS);
    let no_cert = write(
        "no-cert.toml",
        "[kafka.tls]\nca = \"env:K2MC_TEST_KAFKA_CA\"\n",
    );
    let public_roots = write("public-roots.toml", "[kafka.tls]\n");

    // Each refusal fails the run at once (no minute of retries) with an error that says why and
    // names the setting to fix, and lands nothing.
    for (what, config, identity, why, fix) in [
        (
            "no client certificate",
            &no_cert,
            &pki.client,
            "CertificateRequired",
            "set kafka.tls.client_certificate and kafka.tls.client_key",
        ),
        (
            "a certificate from another CA",
            &mtls,
            &pki.stranger,
            "UnknownCA",
            "check that kafka.tls.client_certificate is signed by a CA the brokers trust",
        ),
        (
            "the server's CA not trusted",
            &public_roots,
            &pki.client,
            "UnknownIssuer",
            "set kafka.tls.ca (or kafka.tls.ca_file) to their CA",
        ),
    ] {
        let refused = front.refused();
        let (ok, stderr, secs) = run(config, &bootstrap, &pki, identity);
        assert!(!ok, "{what}: the run succeeded");
        let head = format!("kafka tls: the TLS handshake with {bootstrap} failed");
        assert!(stderr.contains(&head), "{what}:\n{stderr}");
        assert!(
            stderr.contains(why) && stderr.contains(fix),
            "{what}: the error does not say why and what to fix:\n{stderr}"
        );
        assert!(secs < 20.0, "{what}: took {secs:.1} s to fail");
        assert!(
            front.refused_since(refused, Duration::from_secs(10)),
            "{what}: the front saw no refused handshake within 10 s"
        );
        println!(
            "mtls refusal | {what} | {secs:.1} s | {}",
            stderr.lines().last().unwrap_or_default()
        );
    }
    assert!(
        landed_rows(shared_emulator().unwrap(), table).is_empty(),
        "a refused run landed rows"
    );

    let (ok, stderr, _) = run(&mtls, &bootstrap, &pki, &pki.client);
    assert!(ok, "the run with the client certificate failed:\n{stderr}");
    let rows = landed_rows(shared_emulator().unwrap(), table);
    assert_eq!(rows.len(), 40, "{rows:?}");
    let offsets: Vec<i64> = rows.iter().map(|r| r.2).collect();
    assert_eq!(offsets, (0..40).collect::<Vec<i64>>(), "every offset once");
    assert_eq!(
        rows[0],
        ("ds=20240103".into(), "V0".into(), 0, "138****0000".into())
    );
    assert!(front.accepted() > 0);
}
