//! Our MaxCompute client and codec, refereed by pyodps 0.13.2 (issue proofs 1–3).

use harness::stack::shared_stack;
use harness::{ACCESS_KEY, Emulator, client, client_config, pyodps, shared_emulator};

use crate::case::Case;
use k2mc::maxcompute::MaxComputeClient;
use k2mc::maxcompute::{
    Compression, MaxComputeError, PartitionSpec, RecordReader, RecordWriter, encode_block,
};

use crate::rows;

/// Proof 1: pyodps does everything our users rely on against the emulator.
#[test]
fn pyodps_suite_passes_against_the_emulator() -> anyhow::Result<()> {
    let emulator = shared_emulator()?;
    let out = emulator.pyodps(&["suite", "--table", "pyodps_every_type"])?;
    let summary: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(summary["rows_downloaded"], 4, "{summary}");
    assert_eq!(summary["count"], 4, "{summary}");
    Ok(())
}

/// Proof 2: rows of every type uploaded by our client (raw, deflate and LZ4 blocks) are what pyodps
/// downloads, and what our own download returns.
#[tokio::test]
async fn client_upload_of_every_type_reads_back_equal_in_pyodps() -> anyhow::Result<()> {
    let emulator = shared_emulator()?;
    let mc = client(emulator)?;
    let table = "client_every_type";
    mc.run_sql(&format!("DROP TABLE IF EXISTS {table}"), &[])
        .await?;
    mc.run_sql(
        &format!(
            "CREATE TABLE {table} ({}) PARTITIONED BY (ds string) LIFECYCLE 1",
            rows::ddl_columns()
        ),
        &[],
    )
    .await?;
    let info = mc.get_table(table).await?;
    assert_eq!(info.schema, rows::schema());

    let spec = PartitionSpec::parse("ds=20240101")?;
    assert!(!mc.partition_exists(table, &spec).await?);
    mc.create_partition_if_not_exists(table, &spec).await?;
    mc.create_partition_if_not_exists(table, &spec).await?;
    assert!(mc.partition_exists(table, &spec).await?);

    let types = info.schema.column_types();
    let mut all = rows::edge_rows();
    all.extend(rows::random_rows(300, 7));
    let session = mc.create_upload_session(table, Some(&spec), false).await?;
    let (first, second) = all.split_at(150);
    mc.upload_block(
        &session,
        0,
        &encode_block(&types, first, Compression::None)?,
    )
    .await?;
    mc.upload_block(
        &session,
        1,
        &encode_block(&types, second, Compression::Deflate)?,
    )
    .await?;
    // Re-PUT of block 1 (now an LZ4 frame) overwrites it rather than adding rows.
    mc.upload_block(
        &session,
        1,
        &encode_block(&types, second, Compression::Lz4)?,
    )
    .await?;
    let committed = mc.commit_upload(&session, &[0, 1]).await?;
    assert!(committed.is_committed());

    let got =
        rows::parse_lines(&emulator.pyodps(&["dump", table, "--partition", "ds=20240101"])?);
    assert_eq!(got.len(), all.len());
    rows::assert_same(&got, &rows::canonical(&all));

    let download = mc.create_download_session(table, Some(&spec)).await?;
    assert_eq!(download.record_count, all.len() as u64);
    assert_eq!(
        mc.download_rows(&download, 0, download.record_count)
            .await?,
        all
    );

    let result = mc
        .run_sql(
            &format!("SELECT count(*) FROM {table} WHERE ds='20240101'"),
            &[],
        )
        .await?;
    assert_eq!(result.rows()?.1, vec![vec![all.len().to_string()]]);
    Ok(())
}

/// A block of several MB is one Tunnel PUT, as MaxCompute takes it (the emulator once answered
/// 413 to anything over 2 MB; the pipeline's blocks are 8 MB).
#[tokio::test]
async fn a_block_of_several_megabytes_uploads_in_one_put() -> anyhow::Result<()> {
    let emulator = shared_emulator()?;
    let mc = client(emulator)?;
    let table = "client_big_block";
    mc.run_sql(&format!("DROP TABLE IF EXISTS {table}"), &[])
        .await?;
    mc.run_sql(
        &format!("CREATE TABLE {table} ({})", rows::ddl_columns()),
        &[],
    )
    .await?;
    let types = mc.get_table(table).await?.schema.column_types();
    let mut n = 1000;
    let (block, count) = loop {
        let block = encode_block(&types, &rows::random_rows(n, 11), Compression::None)?;
        if block.len() > 4 << 20 {
            break (block, n);
        }
        n *= 2;
    };
    let session = mc.create_upload_session(table, None, false).await?;
    mc.upload_block(&session, 0, &block).await?;
    assert!(mc.commit_upload(&session, &[0]).await?.is_committed());
    let download = mc.create_download_session(table, None).await?;
    assert_eq!(download.record_count, count as u64);
    Ok(())
}

/// Proof 3a: bytes our writer makes (plain, deflate and LZ4) are decoded by pyodps's
/// TunnelRecordReader with checksums on, and a flipped byte is rejected by both readers.
#[test]
fn pyodps_reader_decodes_our_bytes_and_rejects_a_flipped_byte() -> anyhow::Result<()> {
    let schema = rows::schema();
    let types = schema.column_types();
    let mut all = rows::edge_rows();
    all.extend(rows::random_rows(200, 11));
    let mut w = RecordWriter::new(&types, Vec::new());
    for row in &all {
        w.write(row)?;
    }
    let bytes = w.finish()?;
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.bin");
    std::fs::write(&good, &bytes)?;
    let out = pyodps(
        None,
        &[
            "decode-stream",
            "--schema",
            &rows::schema_json(),
            "--input",
            good.to_str().unwrap_or_default(),
        ],
    )?;
    rows::assert_same(&rows::parse_lines(&out), &rows::canonical(&all));

    // pyodps's own decompressing streams read every compression the encode stage writes.
    for compression in [Compression::Deflate, Compression::Lz4] {
        let block = encode_block(&types, &all, compression)?;
        let file = dir.path().join(format!("good.{compression}"));
        std::fs::write(&file, block.to_vec())?;
        let out = pyodps(
            None,
            &[
                "decode-stream",
                "--content-encoding",
                compression.content_encoding().unwrap_or_default(),
                "--schema",
                &rows::schema_json(),
                "--input",
                file.to_str().unwrap_or_default(),
            ],
        )?;
        rows::assert_same(&rows::parse_lines(&out), &rows::canonical(&all));
    }

    // Flip one bit inside the first row's string payload.
    let at = bytes
        .windows(4)
        .position(|w| w == "ünï".as_bytes().get(..4).unwrap_or_default())
        .unwrap_or(bytes.len() / 2);
    let mut bad = bytes.clone();
    bad[at] ^= 0x01;
    let bad_path = dir.path().join("bad.bin");
    std::fs::write(&bad_path, &bad)?;
    let err = pyodps(
        None,
        &[
            "decode-stream",
            "--schema",
            &rows::schema_json(),
            "--input",
            bad_path.to_str().unwrap_or_default(),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("Checksum"), "{err}");
    assert!(RecordReader::new(&types, &bad).read_all().is_err());
    Ok(())
}

/// Proof 3b: bytes pyodps's writer makes (with its 10-byte CRC varints) are decoded by our reader.
#[test]
fn our_reader_decodes_pyodps_bytes() -> anyhow::Result<()> {
    let mut all = rows::edge_rows();
    all.extend(rows::random_rows(200, 13));
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("rows.jsonl");
    let lines: Vec<String> = rows::canonical(&all)
        .iter()
        .map(|r| r.to_string())
        .collect();
    std::fs::write(&input, lines.join("\n"))?;
    let out = dir.path().join("pyodps.bin");
    pyodps(
        None,
        &[
            "write-stream",
            "--schema",
            &rows::schema_json(),
            "--rows",
            input.to_str().unwrap_or_default(),
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    )?;
    let bytes = std::fs::read(&out)?;
    let types = rows::schema().column_types();
    let decoded = RecordReader::new(&types, &bytes).read_all()?;
    rows::assert_same(&rows::canonical(&decoded), &rows::canonical(&all));
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    assert!(RecordReader::new(&types, &bad).read_all().is_err());
    Ok(())
}

/// Typed errors: ODPS codes from SQL, NoSuchObject for a missing table, a bad signature refused
/// without retrying.
#[tokio::test]
async fn errors_carry_maxcompute_codes() -> anyhow::Result<()> {
    let emulator = shared_emulator()?;
    let mc = client(emulator)?;
    match mc.run_sql("SELEC 1", &[]).await {
        Err(MaxComputeError::Sql { code, message, .. }) => {
            assert_eq!(code, "ODPS-0130161");
            assert!(message.starts_with("[1,1]"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let err = mc
        .run_sql("SELECT count(*) FROM no_such_table", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ODPS-0130131"), "{err}");
    let err = mc.get_table("no_such_table").await.unwrap_err();
    assert!(
        matches!(err, MaxComputeError::Service { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.code(), Some("NoSuchObject"));

    let mut config = client_config(emulator, &format!("{ACCESS_KEY}-wrong"))?;
    config.tunnel_endpoint = Some(format!("http://{}", emulator.addr).parse()?);
    let wrong = MaxComputeClient::new(config)?;
    let err = wrong.get_table("anything").await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureNotMatch"), "{err}");
    assert!(!err.is_retryable());
    assert!(
        !err.to_string().contains(ACCESS_KEY),
        "the secret leaked into an error: {err}"
    );
    let err = wrong
        .create_upload_session("anything", None, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    Ok(())
}

/// Proof 3c: a block the load joins from several staged LZ4 pieces, exactly as k2mc sends it, is
/// read by pyodps's own LZ4 stream (one frame: pyodps stops after the first).
#[test]
fn joined_lz4_blocks_as_sent_are_read_by_pyodps() -> anyhow::Result<()> {
    let (_data, bodies, emulator) = emulator_keeping_bodies()?;
    // 64 KiB staged blocks, one load of up to 64 MiB: the load joins every piece.
    let case = Case::on(
        "joined_lz4",
        1,
        "[limits]\nblock_bytes = 65536\ncompression = \"lz4\"\n",
        "ds=x",
        &emulator,
        &shared_stack()?.bootstrap(),
    );
    let n = 4000;
    case.produce(0, 0..n, 1);
    let (ok, out, err) = case.k2mc(&["run"], &[]);
    assert!(ok, "{err}\n{out}");
    let info = crate::case::rt().block_on(client(&emulator)?.get_table(&case.table))?;
    let schema = serde_json::to_string(
        &info
            .schema
            .columns
            .iter()
            .map(|c| [c.name.clone(), c.ty.to_string()])
            .collect::<Vec<_>>(),
    )?;
    let mut ids = std::collections::BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(bodies.path())? {
        let path = entry?.path();
        assert!(
            path.to_string_lossy().ends_with(".lz4"),
            "{}",
            path.display()
        );
        let body = std::fs::read(&path)?;
        let raw = k2mc::maxcompute::decompress(&body, Compression::Lz4)?;
        assert!(
            raw.len() > 2 * 65536,
            "{} holds one staged block's rows at most ({} bytes)",
            path.display(),
            raw.len()
        );
        let lines = pyodps(
            None,
            &[
                "decode-stream",
                "--content-encoding",
                "x-lz4-frame",
                "--schema",
                &schema,
                "--input",
                path.to_str().unwrap_or_default(),
            ],
        )?;
        for row in rows::parse_lines(&lines) {
            assert!(ids.insert(row[0].to_string()), "{row:?} twice");
        }
        files += 1;
    }
    assert!(files >= 1);
    assert_eq!(ids.len(), n as usize);
    assert_eq!(case.landed().len(), n as usize);
    Ok(())
}

/// A load sends up to `load.parallel_blocks` blocks of a session at once (`docs/architecture.md`,
/// the load protocol): one at a time when set to 1; several at once by default, through dropped
/// block uploads and a crash between blocks, with every record landing once (pyodps reads).
#[test]
fn blocks_of_one_session_go_at_once_and_land_once_through_drops_and_a_crash() -> anyhow::Result<()>
{
    let (_data, bodies, emulator) = emulator_keeping_bodies()?;
    // 64 KiB staged pieces joined two by two: each load's session has several blocks.
    let case = Case::on(
        "parallel_blocks",
        1,
        "[limits]\nblock_bytes = 65536\n\n[load]\nblock_bytes = 131072\n",
        "ds=x",
        &emulator,
        &shared_stack()?.bootstrap(),
    );
    let in_flight = || emulator.blocks_in_flight_max();
    let n = 4000;
    case.produce(0, 0..n, 1);
    let (ok, out, err) = case.k2mc(&["run"], &[("K2MC__LOAD__PARALLEL_BLOCKS", "1")]);
    assert!(ok, "{err}\n{out}");
    case.assert_exactly_once(n as usize);
    assert_eq!(
        in_flight()?,
        1,
        "parallel_blocks = 1 sends one block at a time"
    );
    let mut per_session = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(bodies.path())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let session = name.split('.').next().unwrap_or_default().to_owned();
        *per_session.entry(session).or_default() += 1;
    }
    assert!(
        per_session.values().any(|b| *b >= 2),
        "a session of several blocks: {per_session:?}"
    );

    // The default: dropped uploads are retried beside the blocks still going. The emulator
    // answers a block once its body has arrived; the latency keeps each one in flight there.
    case.produce(0, n..2 * n, 1);
    emulator.set_faults(&serde_json::json!({"fail_blocks": 2, "latency_ms": 150}))?;
    let (ok, out, err) = case.k2mc(&["run"], &[]);
    emulator.set_faults(&serde_json::json!({}))?;
    assert!(ok, "{err}\n{out}");
    assert_eq!(emulator.faults()?["fired"]["fail_blocks"], 2);
    assert!(in_flight()? >= 2, "blocks went one at a time");
    case.assert_exactly_once(2 * n as usize);

    // A crash once the second block is in: some blocks of the session were sent, others were in
    // flight; the next run resumes the recorded session and sends every block again.
    case.produce(0, 2 * n..3 * n, 1);
    let (ok, _, err) = case.k2mc(&["run"], &[("K2MC_FAULT_POINT", "after-block:2")]);
    assert!(!ok && err.contains("after-block"), "{err}");
    case.assert_exactly_once(2 * n as usize);
    let (ok, out, err) = case.k2mc(&["run"], &[]);
    assert!(ok, "{err}\n{out}");
    case.assert_exactly_once(3 * n as usize);
    case.assert_log_chains(0);
    Ok(())
}

/// An emulator of its own that keeps every Tunnel block body it accepts in the second directory
/// (`{session}.{block}.{compression}`); the first holds its data.
fn emulator_keeping_bodies() -> anyhow::Result<(tempfile::TempDir, tempfile::TempDir, Emulator)> {
    let data = tempfile::tempdir()?;
    let bodies = tempfile::tempdir()?;
    let emulator = Emulator::start_with(
        data.path(),
        &["--keep-bodies", bodies.path().to_str().unwrap_or_default()],
    )?;
    Ok((data, bodies, emulator))
}
