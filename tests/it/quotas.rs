//! The emulator's Tunnel quotas (`docs/maxcompute-protocol.md`, "Quotas"): a table over its
//! quota is answered `429 FlowExceeded`, which pyodps (the referee) and our client both ride out
//! by backing off, so nothing fails and nothing is written twice.

use harness::{Emulator, client_config};
use k2mc::maxcompute::{
    Compression, MaxComputeClient, PartitionSpec, RetryPolicy, Value, encode_block,
};

/// Five sessions in a row against a quota of two per (compressed) five minutes: pyodps and our
/// client, with its default backoff, each commit all five; the emulator refused some.
#[tokio::test]
async fn pyodps_and_our_client_ride_out_a_table_over_its_quota() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // 300×: five minutes are one second, fifteen seconds are 50 ms.
    let emulator = Emulator::start_with(
        dir.path(),
        &[
            "--quota-sessions",
            "2",
            "--quota-blocks",
            "3",
            "--quota-commits",
            "2",
            "--quota-time-scale",
            "300",
        ],
    )?;
    let mut config = client_config(&emulator, harness::ACCESS_KEY)?;
    config.retry = RetryPolicy::default();
    let mc = MaxComputeClient::new(config)?;
    let table = "quota_t";
    mc.run_sql(
        &format!("CREATE TABLE {table} (id bigint, name string) PARTITIONED BY (ds string)"),
        &[],
    )
    .await?;
    let spec = PartitionSpec::parse("ds=1")?;
    mc.create_partition_if_not_exists(table, &spec).await?;

    let out = emulator.pyodps(&["sessions", table, "--partition", "ds=1", "--count", "5"])?;
    assert!(out.contains("\"committed\": 5"), "{out}");
    let quotas = emulator.quotas()?;
    let refused = |q: &serde_json::Value, name: &str| q["refused"][name].as_u64().unwrap_or(0);
    assert!(
        refused(&quotas, "upload sessions per 5 minutes") >= 1,
        "pyodps was never over quota: {quotas}"
    );
    let before = refused(&quotas, "upload sessions per 5 minutes")
        + refused(&quotas, "blocks per 5 minutes");

    let types = mc.get_table(table).await?.schema.column_types();
    for i in 0..5 {
        let session = mc.create_upload_session(table, Some(&spec), false).await?;
        let row = vec![vec![Value::Int(100 + i), Value::Null]];
        mc.upload_block(
            &session,
            0,
            &encode_block(&types, &row, Compression::Deflate)?,
        )
        .await?;
        assert!(mc.commit_upload(&session, &[0]).await?.is_committed());
    }
    let quotas = emulator.quotas()?;
    let after = refused(&quotas, "upload sessions per 5 minutes")
        + refused(&quotas, "blocks per 5 minutes");
    assert!(after > before, "our client was never over quota: {quotas}");
    assert_eq!(quotas["sessions"]["k2mc_local.quota_t"], 10, "{quotas}");

    let result = mc
        .run_sql(&format!("SELECT count(*) FROM {table} WHERE ds='1'"), &[])
        .await?;
    assert_eq!(result.rows()?.1[0][0], "10", "every row once");
    Ok(())
}
