//! The emulator's own promises: durable across a SIGKILL restart (proof 4), fault knobs that our
//! client's retries and commit settlement survive, and signature checks that refuse unsigned,
//! badly signed and stale requests. Each test here owns its emulator, since faults are global.

use std::time::Duration;

use harness::{ACCESS_ID, ACCESS_KEY, Emulator, PROJECT, client, client_config};
use k2mc::maxcompute::{
    CanonicalRequest, Compression, Credentials, MaxComputeClient, MaxComputeError, PartitionSpec,
    SignatureVersion, Value, authorization, encode_block,
};
use serde_json::json;

async fn setup_table(
    mc: &MaxComputeClient,
    table: &str,
) -> anyhow::Result<(Vec<k2mc::maxcompute::ColumnType>, PartitionSpec)> {
    mc.run_sql(
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (id bigint, name string) PARTITIONED BY (ds string)"
        ),
        &[],
    )
    .await?;
    let spec = PartitionSpec::parse("ds=1")?;
    mc.create_partition_if_not_exists(table, &spec).await?;
    Ok((mc.get_table(table).await?.schema.column_types(), spec))
}

fn rows(from: i64, n: i64) -> Vec<Vec<Value>> {
    (from..from + n)
        .map(|i| vec![Value::Int(i), Value::String(format!("n{i}"))])
        .collect()
}

async fn count(mc: &MaxComputeClient, table: &str) -> anyhow::Result<u64> {
    let result = mc
        .run_sql(&format!("SELECT count(*) FROM {table} WHERE ds='1'"), &[])
        .await?;
    Ok(result.rows()?.1[0][0].parse()?)
}

/// Proof 4: killed mid-way (one session committed, one open with a block), restarted on the same
/// data: nothing committed is lost, nothing duplicates, and the open session carries on.
#[tokio::test]
async fn survives_sigkill_restart_without_loss_or_duplicates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(dir.path())?;
    let mc = client(&emulator)?;
    let table = "restart_t";
    let (types, spec) = setup_table(&mc, table).await?;
    let done = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &done,
        0,
        &encode_block(&types, &rows(0, 100), Compression::Deflate)?,
    )
    .await?;
    mc.commit_upload(&done, &[0]).await?;
    let open = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &open,
        0,
        &encode_block(&types, &rows(100, 50), Compression::None)?,
    )
    .await?;

    let data = emulator.kill()?;
    let emulator = Emulator::start(&data)?;
    let mc = client(&emulator)?;
    assert_eq!(
        count(&mc, table).await?,
        100,
        "committed rows after restart"
    );
    let reloaded = mc
        .reload_upload_session(table, Some(&spec), &open.id)
        .await?;
    assert_eq!(reloaded.status, "NORMAL");
    assert_eq!(reloaded.blocks, vec![0]);
    mc.upload_block(
        &reloaded,
        1,
        &encode_block(&types, &rows(150, 50), Compression::Deflate)?,
    )
    .await?;
    mc.commit_upload(&reloaded, &[0, 1]).await?;
    // Committing the first session again is a no-op: it is CLOSED.
    assert!(mc.commit_upload(&done, &[0]).await?.is_committed());
    assert_eq!(count(&mc, table).await?, 200);
    let download = mc.create_download_session(table, Some(&spec)).await?;
    let ids: Vec<Value> = mc
        .download_rows(&download, 0, 200)
        .await?
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, (0..200).map(Value::Int).collect::<Vec<_>>());
    Ok(())
}

/// Throttling, dropped blocks and an ambiguous commit are retried or settled; rows land once.
#[tokio::test]
async fn client_survives_every_fault_knob() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(dir.path())?;
    let mc = client(&emulator)?;
    let table = "faults_t";
    let (types, spec) = setup_table(&mc, table).await?;

    emulator.set_faults(
        &json!({"throttle": 3, "fail_blocks": 2, "ambiguous_commits": 1, "latency_ms": 5}),
    )?;
    let session = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &session,
        0,
        &encode_block(&types, &rows(0, 10), Compression::Deflate)?,
    )
    .await?;
    assert!(mc.commit_upload(&session, &[0]).await?.is_committed());
    let fired = emulator.faults()?["fired"].clone();
    assert_eq!(fired["throttle"], 3, "{fired}");
    assert_eq!(fired["fail_blocks"], 2, "{fired}");
    assert_eq!(fired["ambiguous_commits"], 1, "{fired}");
    assert_eq!(
        count(&mc, table).await?,
        10,
        "an ambiguous commit must not duplicate or lose rows"
    );

    // A commit that keeps failing gives up after the bounded retries and commits nothing.
    emulator.set_faults(&json!({"fail_commits": 100}))?;
    let session = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &session,
        0,
        &encode_block(&types, &rows(10, 5), Compression::None)?,
    )
    .await?;
    let err = mc.commit_upload(&session, &[0]).await.unwrap_err();
    assert!(
        matches!(err, MaxComputeError::RetriesExhausted { .. }),
        "{err}"
    );
    assert_eq!(count(&mc, table).await?, 10);
    emulator.set_faults(&json!({}))?;
    assert!(
        mc.commit_upload(&session, &[0]).await?.is_committed(),
        "the same session commits once the fault clears"
    );
    assert_eq!(count(&mc, table).await?, 15);

    // An expired session can no longer commit, and says so.
    let session = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &session,
        0,
        &encode_block(&types, &rows(15, 5), Compression::None)?,
    )
    .await?;
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/_emulator/uploads/{}/expire",
            emulator.addr, session.id
        ))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    let err = mc.commit_upload(&session, &[0]).await.unwrap_err();
    assert!(
        matches!(err, MaxComputeError::SessionNotWritable { ref status, .. } if status == "EXPIRED"),
        "{err}"
    );
    assert_eq!(count(&mc, table).await?, 15);

    // A block list that differs from the server's is refused before commit.
    let session = mc.create_upload_session(table, Some(&spec), false).await?;
    mc.upload_block(
        &session,
        3,
        &encode_block(&types, &rows(20, 1), Compression::None)?,
    )
    .await?;
    assert!(mc.commit_upload(&session, &[0]).await.is_err());
    Ok(())
}

/// A session whose TTL passes expires on its own.
#[tokio::test]
async fn sessions_expire_after_their_ttl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start_with(dir.path(), &["--session-ttl-secs", "1"])?;
    let mc = client(&emulator)?;
    let (types, spec) = setup_table(&mc, "ttl_t").await?;
    let session = mc
        .create_upload_session("ttl_t", Some(&spec), false)
        .await?;
    mc.upload_block(
        &session,
        0,
        &encode_block(&types, &rows(0, 1), Compression::None)?,
    )
    .await?;
    // A committed one too: past its lifetime the status no longer tells it from the other.
    let committed = mc
        .create_upload_session("ttl_t", Some(&spec), false)
        .await?;
    mc.upload_block(
        &committed,
        0,
        &encode_block(&types, &rows(1, 1), Compression::None)?,
    )
    .await?;
    mc.commit_upload(&committed, &[0]).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in [&session.id, &committed.id] {
        let reloaded = mc.reload_upload_session("ttl_t", Some(&spec), id).await?;
        assert_eq!(reloaded.status, "EXPIRED");
    }
    Ok(())
}

fn signed(
    method: &str,
    addr: &str,
    path: &str,
    date: &str,
    version: &SignatureVersion,
    utc_date: &str,
) -> (String, String) {
    let mut canonical = CanonicalRequest {
        method: method.into(),
        date: date.into(),
        path: path.into(),
        ..CanonicalRequest::default()
    };
    canonical
        .params
        .insert("curr_project".into(), PROJECT.into());
    let auth = authorization(
        &Credentials::new(ACCESS_ID, ACCESS_KEY),
        version,
        &canonical,
        utc_date,
    );
    (
        format!("http://{addr}/api{path}?curr_project={PROJECT}"),
        auth,
    )
}

/// Unsigned, stale and badly signed requests are refused with the codes the SDKs parse; v4
/// signatures are accepted.
#[tokio::test]
async fn signature_checks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(dir.path())?;
    let http = reqwest::Client::new();
    let path = format!("/projects/{PROJECT}");

    let resp = http
        .get(format!("http://{}/api{path}", emulator.addr))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    let now = chrono::Utc::now();
    let stale = now - chrono::Duration::minutes(20);
    let date = httpdate::fmt_http_date(stale.into());
    let (url, auth) = signed(
        "GET",
        &emulator.addr,
        &path,
        &date,
        &SignatureVersion::V2,
        "",
    );
    let resp = http
        .get(url)
        .header("Date", date)
        .header("Authorization", auth)
        .send()
        .await?;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await?.contains("RequestTimeTooSkewed"));

    let date = httpdate::fmt_http_date(now.into());
    let v4 = SignatureVersion::V4 {
        region: "cn-hangzhou".into(),
    };
    let (url, auth) = signed(
        "GET",
        &emulator.addr,
        &path,
        &date,
        &v4,
        &now.format("%Y%m%d").to_string(),
    );
    let resp = http
        .get(url.clone())
        .header("Date", &date)
        .header("Authorization", &auth)
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "v4 signature refused");
    let tampered = auth.replacen("ODPS ", "ODPS x", 1);
    let resp = http
        .get(url)
        .header("Date", &date)
        .header("Authorization", tampered)
        .send()
        .await?;
    assert_eq!(resp.status(), 403);

    // A client configured for v4 works end to end.
    let mut config = client_config(&emulator, ACCESS_KEY)?;
    config.signature = Some(v4);
    let mc = MaxComputeClient::new(config)?;
    mc.run_sql("CREATE TABLE IF NOT EXISTS v4_t (a bigint)", &[])
        .await?;
    assert_eq!(mc.get_table("v4_t").await?.schema.columns.len(), 1);
    Ok(())
}
