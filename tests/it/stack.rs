//! The local stack keeps the guarantees the commit protocol takes from S3: of racing create-only
//! writes of one key exactly one wins, and of racing `If-Match` replaces from one ETag exactly one
//! wins. (s3s-fs alone does not; the stack's front makes it so, see `harness::s3front`.)

use harness::stack::{shared_stack, staging_client};
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

            let original = clients[0].get(&key).await.unwrap().unwrap();
            let gate = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
            let won = race(&clients, |s, w| {
                let (key, gate, etag) = (key.clone(), gate.clone(), original.etag.clone());
                tokio::spawn(async move {
                    let data = body(&format!("replacer {w}"));
                    gate.wait().await;
                    s.replace(&key, data, &etag).await.unwrap()
                })
            })
            .await;
            assert_eq!(won, 1, "If-Match round {round}: {won} replacers won");
            let after = clients[0].get(&key).await.unwrap().unwrap();
            assert!(after.data.starts_with(b"replacer "));
            assert_ne!(after.etag, original.etag);
        }
    });
}
