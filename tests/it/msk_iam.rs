//! Amazon MSK IAM access control end to end. The token k2mc signs is compared byte for byte with
//! what AWS's own `aws-msk-iam-sasl-signer-python` makes for the same credentials, region and
//! clock (tests/msk/sign_token.py). Then tansu sits behind an IAM listener (harness/iamfront.rs)
//! that checks each OAUTHBEARER token's SigV4 signature and lifetime: `k2mc` signs with the AWS
//! credentials it runs with (here the environment's, as the Lambda role's elsewhere), the right
//! ones load every record once, and a refused login fails at once naming the fix.

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use harness::iamfront::{IamFront, IamStats, Known};
use harness::stack::{k2mc_env, start_tansu_advertising, write_config};
use harness::{repo_root, shared_emulator, workspace_bin};
use k2mc::kafka::msk_iam::token_at;
use rskafka::client::{ClientBuilder, OauthBearerCredentials, SaslConfig};

use crate::case::{create_vehicle_table, landed_rows, produce_vehicles, rt, transforms_toml};

/// The user agent the Python signer puts in its tokens (`<library>/<version>`).
const PYTHON_USER_AGENT: &str = "aws-msk-iam-sasl-signer-python/1.0.2";

/// The token AWS's Python signer makes (its venv is set up by infra/local/setup).
fn python_token(
    access: &str,
    secret: &str,
    session: Option<&str>,
    region: &str,
    epoch: u64,
) -> String {
    let python = repo_root().join(".local/msk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run infra/local/setup (it installs aws-msk-iam-sasl-signer-python)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/msk/sign_token.py"))
        .args([
            "--access-key",
            access,
            "--secret-key",
            secret,
            "--region",
            region,
        ])
        .args(["--epoch", &epoch.to_string()]);
    if let Some(s) = session {
        cmd.args(["--session-token", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The OAUTHBEARER client message carrying `token` (RFC 7628), as rskafka's SASL library sends it.
fn bearer(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

#[test]
fn the_token_is_byte_for_byte_what_awss_python_signer_makes() {
    let cases = [
        (
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            "us-east-1",
            1_700_000_000,
        ),
        (
            "ASIAK2MCTEST",
            "a/secret+with=odd/characters",
            Some("IQoJb3JpZ2luX2VjE//session+token=="),
            "eu-central-1",
            1_767_225_599,
        ),
    ];
    for (access, secret, session, region, epoch) in cases {
        let expected = python_token(access, secret, session, region, epoch);
        let creds = Credentials::new(access, secret, session.map(str::to_owned), None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
        let ours = token_at(&creds, region, time, PYTHON_USER_AGENT).unwrap();
        assert_eq!(ours, expected, "{access} in {region}");
        // The test's IAM listener takes both while they are fresh: it checks what MSK checks.
        let front = IamFront {
            region: region.to_owned(),
            known: vec![Known {
                access_key: access.to_owned(),
                secret_key: secret.to_owned(),
                session_token: session.map(str::to_owned),
            }],
            clock_ahead: Duration::ZERO,
        };
        let now = SystemTime::now();
        let fresh = token_at(&creds, region, now, "k2mc/test").unwrap();
        front.verify(&bearer(&fresh)).unwrap();
        let other = Credentials::new(
            access,
            "not the secret",
            session.map(str::to_owned),
            None,
            "t",
        );
        let forged = token_at(&other, region, now, "k2mc/test").unwrap();
        let why = front.verify(&bearer(&forged)).unwrap_err().to_string();
        assert!(why.contains("signature does not match"), "{why}");
    }
}

/// Runs `k2mc run` with `config` and the environment's AWS credentials; returns (success,
/// stderr, seconds).
fn run(config: &std::path::Path) -> (bool, String, f64) {
    let started = Instant::now();
    let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
    cmd.args(["run", "--config"]).arg(config);
    for (k, v) in k2mc_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed().as_secs_f64(),
    )
}

#[test]
fn msk_iam_loads_every_record_once_and_a_refused_login_fails_at_once_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // k2mc runs with the environment's AWS credentials (those the staging bucket takes too);
    // the producer has an identity of its own.
    let env: std::collections::HashMap<&str, String> = k2mc_env().into_iter().collect();
    let k2mc = Known {
        access_key: env["AWS_ACCESS_KEY_ID"].clone(),
        secret_key: env["AWS_SECRET_ACCESS_KEY"].clone(),
        session_token: None,
    };
    let producer = Known {
        access_key: "AKIDPRODUCER".into(),
        secret_key: "producer-secret".into(),
        session_token: None,
    };
    let front = Arc::new(Mutex::new(IamFront {
        region: "us-east-1".into(),
        known: vec![producer.clone()],
        clock_ahead: Duration::ZERO,
    }));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_port = listener.local_addr().unwrap().port();
    let broker = start_tansu_advertising(dir.path(), Some(front_port)).unwrap();
    let stats: IamStats = IamFront::start(front.clone(), listener, broker.port).unwrap();
    let bootstrap = format!("127.0.0.1:{front_port}");
    let (topic, table) = ("t_msk_iam", "vehicle_msk_iam");

    let (producer_bootstrap, identity) = (bootstrap.clone(), producer.clone());
    rt().block_on(async move {
        create_vehicle_table(shared_emulator().unwrap(), table).await;
        let creds = Credentials::new(&identity.access_key, &identity.secret_key, None, None, "p");
        let callback: rskafka::client::OauthCallback = Arc::new(move || {
            let token = token_at(&creds, "us-east-1", SystemTime::now(), "producer");
            Box::pin(async move { token.map_err(|e| e.into()) })
        });
        let client = ClientBuilder::new(vec![producer_bootstrap])
            .sasl_config(SaslConfig::Oauthbearer(OauthBearerCredentials {
                callback,
                authz_id: None,
                bearer_kvs: Vec::new(),
            }))
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
    let config = dir.path().join("k2mc.toml");
    write_config(
        &config,
        harness::stack::shared_stack().unwrap(),
        &shared_emulator().unwrap().endpoint(),
        "msk_iam",
        &[topic],
        table,
        "ds={event_time:%Y%m%d}",
        &transforms_toml(),
        "",
    )
    .unwrap();
    // The broker address is the front's; IAM signs for us-east-1 (a loopback host names no
    // region, so the config does).
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        &harness::stack::shared_stack().unwrap().bootstrap(),
        &bootstrap,
        1,
    );
    let text = text.replacen(
        "[maxcompute]",
        "[kafka.sasl]\nmechanism = \"aws-msk-iam\"\nregion = \"us-east-1\"\n\n[maxcompute]",
        1,
    );
    std::fs::write(&config, text).unwrap();

    let set = |known: Vec<Known>, ahead: Duration| {
        let mut f = front.lock().unwrap();
        f.known = known;
        f.clock_ahead = ahead;
    };
    // An identity the cluster does not grant, then a token presented after its 15 minutes.
    let stranger = Known {
        secret_key: "another secret".into(),
        ..k2mc.clone()
    };
    for (what, known, ahead, reason) in [
        (
            "wrong credentials",
            vec![producer.clone(), stranger],
            Duration::ZERO,
            "signature does not match",
        ),
        (
            "an expired token",
            vec![producer.clone(), k2mc.clone()],
            Duration::from_secs(16 * 60),
            "expired",
        ),
    ] {
        set(known, ahead);
        let before = stats.refusals().len();
        let (ok, stderr, secs) = run(&config);
        assert!(!ok, "{what}: the run succeeded");
        assert!(
            stderr.contains("kafka aws-msk-iam: the brokers at")
                && stderr.contains("kafka-cluster:Connect"),
            "{what}: {stderr}"
        );
        assert!(
            secs < 30.0,
            "{what}: refused after {secs:.0} s, not at once"
        );
        assert!(
            stats.refusals()[before..]
                .iter()
                .any(|r| r.contains(reason)),
            "{what}: {:?}",
            stats.refusals()
        );
        assert!(
            !stderr.contains(&k2mc.secret_key),
            "{what}: the secret was logged"
        );
        assert!(
            landed_rows(shared_emulator().unwrap(), table).is_empty(),
            "{what}: rows landed"
        );
    }
    // The right identity: every record once, then nothing more on a second run.
    set(vec![producer, k2mc.clone()], Duration::ZERO);
    let accepted = stats.accepted();
    for _ in 0..2 {
        let (ok, stderr, _) = run(&config);
        assert!(ok, "{stderr}");
        assert!(!stderr.contains(&k2mc.secret_key), "the secret was logged");
    }
    assert!(
        stats.accepted() > accepted,
        "k2mc never logged in through the front"
    );
    let rows = landed_rows(shared_emulator().unwrap(), table);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((rows.len(), ids.len()), (40, 40), "every record once");
}
