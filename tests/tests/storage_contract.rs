//! One storage story, run against every dialect (SQLite always, PostgreSQL when
//! `JEMPUT_TEST_DATABASE_URL` is set): the contract of `jemput_server::storage::Storage`.

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use jemput_server::storage::{
    BatchDevice, ChunkKind, DeviceId, ExchangeOutcome, FeedEntry, FeedScope, IndexFilter, IndexRow,
    PostgresStorage, SqliteStorage, SqliteStorageConfig, Storage, StorageError,
};
use jemput_sync_protocol::batch::{
    Cursor, DeviceRecord, DocKnowledge, IdempotencyKey, KnowledgeChange, KnowledgeUpdate,
    LastExchange, Settlement,
};
use jemput_sync_protocol::{DocumentId, StorageId};
use jemput_tests::TestDatabase;

fn document_id() -> DocumentId {
    DocumentId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

fn change(doc: &mut Automerge, key: &str) -> Vec<u8> {
    let heads = doc.get_heads();
    let mut tx = doc.transaction();
    tx.put(ROOT, key, key).expect("put");
    tx.commit();
    doc.save_after(&heads)
}

async fn story<S: Storage>(storage: S) {
    let id = document_id();
    assert!(!storage.document_exists(id).await.expect("exists"));
    assert!(storage.load_chunks(id).await.expect("load").is_empty());

    // Appends are durable and ordered.
    let mut doc = Automerge::new();
    let first = storage
        .append_chunk(id, change(&mut doc, "a"))
        .await
        .expect("append");
    let second = storage
        .append_chunk(id, change(&mut doc, "b"))
        .await
        .expect("append");
    assert!(second > first);
    assert!(storage.document_exists(id).await.expect("exists"));
    let chunks = storage.load_chunks(id).await.expect("load");
    assert_eq!(
        chunks.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert!(chunks.iter().all(|c| c.kind == ChunkKind::Incremental));

    // A chunk written by someone else after we loaded survives our compaction.
    let loaded: Vec<_> = chunks.iter().map(|c| c.id).collect();
    let mut other_writer = doc.clone();
    let concurrent = storage
        .append_chunk(id, change(&mut other_writer, "c"))
        .await
        .expect("append");
    let snapshot = storage
        .compact(id, loaded, doc.save())
        .await
        .expect("compact");
    let after = storage.load_chunks(id).await.expect("load");
    let ids: Vec<_> = after.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![concurrent, snapshot]);
    assert_eq!(after[1].kind, ChunkKind::Snapshot);
    let mut reloaded = Automerge::new();
    for chunk in &after {
        reloaded.load_incremental(&chunk.data).expect("load chunk");
    }
    assert_eq!(reloaded.get_heads(), other_writer.get_heads());

    // Sync states per (document, peer storage), overwritten in place.
    let peer = StorageId::parse("storage-a").expect("id");
    assert_eq!(
        storage.load_sync_state(id, &peer).await.expect("load"),
        None
    );
    storage
        .save_sync_state(id, &peer, vec![1])
        .await
        .expect("save");
    storage
        .save_sync_state(id, &peer, vec![2])
        .await
        .expect("save");
    assert_eq!(
        storage.load_sync_state(id, &peer).await.expect("load"),
        Some(vec![2])
    );

    // Settings are set once.
    assert_eq!(
        storage.init_setting("k", "first").await.expect("init"),
        "first"
    );
    assert_eq!(
        storage.init_setting("k", "second").await.expect("init"),
        "first"
    );
    assert_eq!(
        storage.setting("k").await.expect("get").as_deref(),
        Some("first")
    );

    index_story(&storage).await;
    feed_story(&storage).await;
    storage.ping().await.expect("ping");
    storage.close().await;
}

fn row(id: DocumentId, region: &str, status: &str, tracking: &str, updated_at: i64) -> IndexRow {
    IndexRow {
        document_id: id,
        kind: "application".into(),
        schema: "jemput/application@1".into(),
        region: region.into(),
        status: Some(status.into()),
        service: Some("DUKCAPIL-KTP-EL-BARU".into()),
        agency: Some("Disdukcapil".into()),
        officer: Some("officer-1".into()),
        tracking_code: Some(tracking.into()),
        has_conflict: false,
        heads: vec!["aa".into(), "bb".into()],
        updated_at,
    }
}

async fn index_story<S: Storage>(storage: &S) {
    let (a, b, c) = (document_id(), document_id(), document_id());
    let mut doc = Automerge::new();
    let tracking = format!("JPT-{}", uuid::Uuid::new_v4().simple());
    let first = row(a, "34.71.01.1001", "submitted", &tracking, 1);
    storage
        .append_indexed(a, change(&mut doc, "x"), first.clone())
        .await
        .expect("indexed");
    assert_eq!(storage.index_row(a).await.expect("row"), Some(first));
    assert_eq!(
        storage
            .document_for_tracking_code(&tracking)
            .await
            .expect("lookup"),
        Some(a)
    );

    // A tracking code already held by another document is a conflict, and nothing is written.
    let mut other = Automerge::new();
    let error = storage
        .append_indexed(
            b,
            change(&mut other, "y"),
            row(b, "34.71.01.1002", "draft", &tracking, 2),
        )
        .await
        .expect_err("duplicate tracking code");
    assert!(matches!(error, StorageError::Conflict(_)), "{error}");
    assert!(!storage.document_exists(b).await.expect("exists"));

    let other_code = format!("JPT-{}", uuid::Uuid::new_v4().simple());
    storage
        .append_indexed(
            c,
            change(&mut other, "z"),
            row(c, "35.78.01.1001", "submitted", &other_code, 3),
        )
        .await
        .expect("indexed");
    let in_yogya = storage
        .list_index(&IndexFilter {
            region_prefixes: vec!["34.71".into()],
            limit: 50,
            ..IndexFilter::default()
        })
        .await
        .expect("list");
    assert!(in_yogya.iter().any(|r| r.document_id == a));
    assert!(in_yogya.iter().all(|r| r.region.starts_with("34.71")));
    let submitted = storage
        .list_index(&IndexFilter {
            status: Some("submitted".into()),
            limit: 50,
            ..IndexFilter::default()
        })
        .await
        .expect("list");
    let ids: Vec<_> = submitted.iter().map(|r| r.document_id).collect();
    assert!(ids.contains(&a) && ids.contains(&c));
    assert!(ids.iter().position(|id| *id == c) < ids.iter().position(|id| *id == a));
}

/// The batch sync feed: one number per stored change, in order, scope exits when a
/// document's region changes, and the per-device records and knowledge rows.
async fn feed_story<S: Storage>(storage: &S) {
    let start = storage.feed_head().await.expect("head");
    let (a, b) = (document_id(), document_id());
    let (mut doc_a, mut doc_b) = (Automerge::new(), Automerge::new());
    let code = || format!("JPT-{}", uuid::Uuid::new_v4().simple());
    let (code_a, code_b) = (code(), code());
    let steps = [
        (a, "34.71.01.1001", "x", &code_a),
        (b, "34.71.01.1001", "y", &code_b),
        (a, "35.78.01.1001", "z", &code_a),
    ];
    for (id, region, key, tracking) in steps {
        let doc = if id == a { &mut doc_a } else { &mut doc_b };
        storage
            .append_indexed(id, change(doc, key), row(id, region, "draft", tracking, 1))
            .await
            .expect("indexed");
    }
    let head = storage.feed_head().await.expect("head");
    assert_eq!(head, start + 3);

    let home = FeedScope::Regions(vec!["34.71".into()]);
    let page = storage
        .feed_page(&home, Some(start), head, 10)
        .await
        .expect("feed");
    assert!(page.exhausted);
    assert_eq!(
        page.entries,
        vec![
            FeedEntry::Changed {
                seq: start + 2,
                document_id: b
            },
            FeedEntry::Left {
                seq: start + 3,
                document_id: a,
                region: "35.78.01.1001".into()
            },
        ]
    );
    let away = FeedScope::Regions(vec!["35.78".into()]);
    let page = storage
        .feed_page(&away, Some(start), head, 10)
        .await
        .expect("feed");
    assert_eq!(
        page.entries,
        vec![FeedEntry::Changed {
            seq: start + 3,
            document_id: a
        }]
    );
    let page = storage
        .feed_page(&FeedScope::Everything, Some(start), head, 1)
        .await
        .expect("feed");
    assert!(!page.exhausted);
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.through, start + 2);

    let device = DeviceId::from_random(rand::random());
    assert_eq!(
        storage.batch_device(&device).await.expect("device"),
        BatchDevice::default()
    );
    let heads = doc_a.get_heads();
    let record = DeviceRecord {
        exchanges: 1,
        last: Some(LastExchange {
            key: IdempotencyKey::from_bytes([7; 16]),
            request_digest: u64::MAX - 1,
            cursor: Cursor::from_bytes(vec![1, 2, 3]).expect("cursor"),
            response: vec![0xa0],
        }),
    };
    let delivered = KnowledgeUpdate {
        document_id: a,
        change: KnowledgeChange::Set(DocKnowledge {
            confirmed: Vec::new(),
            pending: Some(heads.clone()),
        }),
    };
    let device_state = BatchDevice {
        record,
        regions: "officer:34.71".into(),
    };
    let outcome = |settlement, knowledge| ExchangeOutcome {
        settlement,
        knowledge,
        device: device_state.clone(),
    };
    storage
        .record_exchange(&device, outcome(Settlement::ForgetAll, vec![delivered]))
        .await
        .expect("record");
    assert_eq!(
        storage.batch_device(&device).await.expect("device"),
        device_state
    );
    storage
        .record_exchange(&device, outcome(Settlement::ConfirmPending, Vec::new()))
        .await
        .expect("record");
    assert_eq!(
        storage.knowledge(&device, a).await.expect("knowledge"),
        DocKnowledge {
            confirmed: heads,
            pending: None
        }
    );
    assert_eq!(
        storage.known_documents(&device).await.expect("known"),
        vec![(a, Some("35.78.01.1001".to_owned()))]
    );
    storage
        .record_exchange(&device, outcome(Settlement::ForgetAll, Vec::new()))
        .await
        .expect("record");
    assert_eq!(
        storage.knowledge(&device, a).await.expect("knowledge"),
        DocKnowledge::default()
    );
}

#[tokio::test]
async fn sqlite_meets_the_storage_contract() {
    let database = TestDatabase::sqlite();
    let config = SqliteStorageConfig::new(database.data_dir().join("jemput.db"));
    story(SqliteStorage::open(config).await.expect("open")).await;
}

#[tokio::test]
async fn postgres_meets_the_storage_contract() {
    let Some(database) = TestDatabase::postgres("postgres storage contract").await else {
        return;
    };
    let url = database.database_url().expect("postgres url");
    story(PostgresStorage::open(url, 4).await.expect("open")).await;
}

#[tokio::test]
async fn sqlite_group_commit_serves_many_concurrent_writers() {
    let database = TestDatabase::sqlite();
    let config = SqliteStorageConfig::new(database.data_dir().join("jemput.db"));
    let storage = std::sync::Arc::new(SqliteStorage::open(config).await.expect("open"));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let storage = std::sync::Arc::clone(&storage);
        tasks.push(tokio::spawn(async move {
            let id = document_id();
            let mut doc = Automerge::new();
            for key in ["a", "b", "c"] {
                storage
                    .append_chunk(id, change(&mut doc, key))
                    .await
                    .expect("append");
            }
            (id, doc.get_heads())
        }));
    }
    for task in tasks {
        let (id, heads) = task.await.expect("task");
        let mut doc = Automerge::new();
        for chunk in storage.load_chunks(id).await.expect("load") {
            doc.load_incremental(&chunk.data).expect("chunk");
        }
        assert_eq!(doc.get_heads(), heads);
    }
    storage.close().await;
}
