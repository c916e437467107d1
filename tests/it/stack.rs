//! The local stack keeps the guarantee the commit protocol takes from S3 (and OSS): of racing
//! create-only writes of one key exactly one wins, so of racing changes to one version of an
//! intent exactly one becomes the next version. (s3s-fs alone does not; the stack's front makes
//! it so, see `harness::s3front`.)

use harness::stack::{shared_stack, staging_client};
use k2mc::pipeline::commit::{BatchId, CommitLog, Counts, Intent, LogScope, TopicPartition};
use k2mc::staging::{Conditional, Staging};

async fn staging() -> Staging {
    staging_client(shared_stack().unwrap(), "stack-test").await
}

/// A body big enough that a server's check-then-write window is wide (s3s-fs streams it to a
/// temporary file between the check and the rename).
fn body(tag: &str) -> bytes::Bytes {
    let mut b = tag.as_bytes().to_vec();
    b.resize(512 * 1024, b'.');
    b.into()
}

/// Eight clients with warm connections released together by a barrier: the requests meet at the
/// server, which is where a check-then-write gap shows.
async fn race(
    clients: &[Staging],
    op: impl Fn(Staging, usize) -> tokio::task::JoinHandle<Conditional>,
) -> usize {
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, s)| op(s.clone(), i))
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap() == Conditional::Written {
            won += 1;
        }
    }
    won
}

#[test]
fn racing_conditional_writes_have_one_winner() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..8 {
            let s = staging().await;
            s.get("race/warm-up").await.unwrap();
            clients.push(s);
        }
        for round in 0..6 {
            let key = format!("race/create-{round}");
            let gate = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
            let won = race(&clients, |s, w| {
                let (key, gate) = (key.clone(), gate.clone());
                tokio::spawn(async move {
                    let data = body(&format!("writer {w}"));
                    gate.wait().await;
                    s.create(&key, data).await.unwrap()
                })
            })
            .await;
            assert_eq!(won, 1, "create-only round {round}: {won} writers won");

            // Racing changes to one version of an intent: one writer makes the next version.
            let logs: Vec<CommitLog> = clients
                .iter()
                .map(|s| CommitLog::new(s.clone(), LogScope::main("stack-test")))
                .collect();
            let intent = |read: u64| Intent {
                batch: BatchId {
                    cluster: "stack-test".into(),
                    topic: "race".into(),
                    partition: 0,
                    start: round,
                    end: round + 1,
                },
                counts: Counts {
                    read,
                    ..Counts::default()
                },
                modules: Vec::new(),
                destinations: Vec::new(),
                dead_letters_key: None,
                project: None,
                table: None,
                last_record: None,
                load: None,
            };
            assert_eq!(
                logs[0].create_intent(&intent(100)).await.unwrap(),
                Conditional::Written
            );
            let gate = std::sync::Arc::new(tokio::sync::Barrier::new(logs.len()));
            let tasks: Vec<_> = logs
                .iter()
                .enumerate()
                .map(|(w, log)| {
                    let (log, gate, mine) = (log.clone(), gate.clone(), intent(w as u64));
                    tokio::spawn(async move {
                        gate.wait().await;
                        log.update_intent(&mine, "v0")
                            .await
                            .unwrap()
                            .map(|tag| (w, tag))
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                winners.extend(task.await.unwrap());
            }
            assert_eq!(winners.len(), 1, "intent round {round}: {winners:?} won");
            let tp = TopicPartition::new("race", 0);
            let (stored, tag) = logs[0].intent(&tp, round).await.unwrap().unwrap();
            assert_eq!(
                (stored.counts.read, tag),
                (winners[0].0 as u64, winners[0].1.clone())
            );
            logs[0].delete_intent(&tp, round).await;
            assert!(logs[0].intent(&tp, round).await.unwrap().is_none());
        }
    });
}
