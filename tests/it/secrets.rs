//! Secrets never leak: the suite's known secret values (the MaxCompute AccessKey, a wrong one,
//! the S3 secret key, a Kafka SASL password, an HMAC key) are used by real runs at
//! `RUST_LOG=trace` — a successful run with a dead letter, a run over the error limit, a signature
//! failure, a SASL failure, `validate`, `status` and `dead-letters list` — and every line those
//! print and every object in the staging bucket (inflated too, for Tunnel blocks) is scanned for
//! them.

use std::io::Read as _;
use std::path::Path;

use harness::stack::{S3_SECRET_KEY, shared_stack};
use harness::{ACCESS_KEY, transform_wasm};

use crate::case::Case;

const KAFKA_PASSWORD: &str = "k2mc-kafka-secret-77d1";
const HMAC_KEY: &str = "k2mc-hmac-secret-19c4";
const WRONG_KEY: &str = "k2mc-wrong-secret-5be0";

/// Every file under `dir`, with its bytes and, when it inflates (a Tunnel block), those too.
fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut inflated = Vec::new();
            if flate2::read::ZlibDecoder::new(&bytes[..])
                .read_to_end(&mut inflated)
                .is_ok()
                || flate2::read::DeflateDecoder::new(&bytes[..])
                    .read_to_end(&mut inflated)
                    .is_ok()
            {
                out.push((format!("{} (inflated)", path.display()), inflated));
            }
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

#[test]
fn known_secrets_never_appear_in_logs_errors_or_objects() {
    let mask = transform_wasm("mask").unwrap();
    let extra = format!(
        "[[transforms]]\nname = \"pseudonymize\"\nwasm = {:?}\nsettings = {{ \"column.vehicle_id\" = \"hmac-sha256\", \"hmac-key\" = \"{HMAC_KEY}\" }}\n\n[limits]\nerror_limit = 1\n",
        mask.display().to_string()
    );
    let case = Case::new("secrets", 1, &extra);
    let trace = ("RUST_LOG", "trace");
    let mut printed: Vec<(String, String)> = Vec::new();
    let mut run = |what: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(trace);
        let (ok, out, err) = case.k2mc(args, &env);
        printed.push((what.to_owned(), format!("{out}\n{err}")));
        (ok, err)
    };

    case.produce(0, 0..20, 1);
    case.produce_raw(0, &["{not json"]);
    let (ok, err) = run("a run with a dead letter", &["run"], &[]);
    assert!(ok, "{err}");
    case.produce_raw(0, &["[1,2", "{also not json"]);
    let (ok, err) = run("a run over the error limit", &["run"], &[]);
    assert!(!ok && err.contains("over error_limit"), "{err}");
    let (ok, err) = run(
        "a run with a wrong AccessKey",
        &["run"],
        &[("K2MC_TEST_MC_KEY", WRONG_KEY)],
    );
    assert!(!ok, "a wrong AccessKey was accepted:\n{err}");
    let sasl = [
        ("K2MC__KAFKA__SASL__MECHANISM", "scram-sha-512"),
        ("K2MC__KAFKA__SASL__USERNAME", "k2mc"),
        ("K2MC__KAFKA__SASL__PASSWORD", KAFKA_PASSWORD),
    ];
    let started = std::time::Instant::now();
    let (ok, err) = run("a run whose SASL login fails", &["status"], &sasl);
    // Refused at once, naming the settings (not a minute of retries).
    assert!(
        err.contains("kafka sasl: the brokers at") && err.contains("check kafka.sasl.mechanism"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 20, "{err}");
    assert!(!ok, "tansu here has no SASL; the login cannot succeed");
    run("validate", &["validate"], &[]);
    run("status", &["status"], &[]);
    run("dead-letters list", &["dead-letters", "list"], &[]);

    // The secrets were in effect: rows landed with HMAC'd ids, and trace logging printed plenty.
    let rows = case.landed();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.1.len() == 64), "{rows:?}");
    let lines: usize = printed.iter().map(|(_, p)| p.lines().count()).sum();
    assert!(lines > 200, "trace logging printed only {lines} lines");

    let secrets = [
        ACCESS_KEY,
        WRONG_KEY,
        S3_SECRET_KEY,
        KAFKA_PASSWORD,
        HMAC_KEY,
    ];
    for (what, text) in &printed {
        for s in secrets {
            assert!(!text.contains(s), "{what} printed the secret {s}");
        }
    }
    let stack = shared_stack().unwrap();
    let objects = objects(&stack.dir.join("s3").join(&stack.bucket));
    assert!(
        objects
            .iter()
            .any(|(name, _)| name.contains("dead-letters"))
    );
    for (name, bytes) in &objects {
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{name} holds the secret {s}"
            );
        }
    }
    eprintln!(
        "secrets scan | {} runs, {lines} lines at trace, {} objects (with inflated blocks) | 0 secrets found",
        printed.len(),
        objects.len()
    );
}
