//! The contract of `AccountStore` and `AuditStore`, run against every dialect (SQLite always,
//! PostgreSQL when `JEMPUT_TEST_DATABASE_URL` is set): credentials, actor bindings under
//! races, and an audit chain that concurrent appenders (several server instances sharing a
//! PostgreSQL database) never fork.

use std::sync::Arc;

use automerge::ActorId;
use jemput_domain::{RegionCode, Role};
use jemput_server::audit::{AuditAction, AuditActor, NewAuditEntry, verify_chain};
use jemput_server::auth::{self, Token};
use jemput_server::storage::{
    ActorOwner, AuditFilter, Credential, CredentialKind, DeviceId, NewDevice, NewUser,
    PasswordHash, PostgresStorage, SqliteStorage, SqliteStorageConfig, Storage, StorageError,
    UserId, Username,
};
use jemput_tests::TestDatabase;

const NOW: i64 = 1_790_000_000_000;

async fn officer<S: Storage>(storage: &S, name: &str) -> UserId {
    storage
        .create_user(NewUser {
            username: Username::parse(name).expect("username"),
            role: Role::Officer,
            password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$x$y".into()),
            regions: vec![RegionCode::parse("34.71.01").expect("region")],
            agencies: Vec::new(),
            created_at: NOW,
        })
        .await
        .expect("create user")
        .id
}

async fn credentials_story<S: Storage>(storage: &S) {
    let user = officer(storage, "petugas").await;
    let duplicate = storage
        .create_user(NewUser {
            username: Username::parse("petugas").expect("username"),
            role: Role::Supervisor,
            password_hash: PasswordHash("x".into()),
            regions: Vec::new(),
            agencies: Vec::new(),
            created_at: NOW,
        })
        .await;
    assert!(
        matches!(duplicate, Err(StorageError::Conflict(_))),
        "{duplicate:?}"
    );

    // A session: valid until it expires or is revoked.
    let token = Token::generate(CredentialKind::Session).expect("random");
    storage
        .create_session(user, token.hash(), NOW, NOW + 1000)
        .await
        .expect("session");
    let identity = auth::identity_for_token(storage, token.expose(), NOW + 1)
        .await
        .expect("valid session");
    assert_eq!(identity.user_id, user);
    assert_eq!(
        identity.regions,
        vec![RegionCode::parse("34.71.01").expect("region")]
    );
    assert!(
        auth::credential_still_valid(storage, &identity, NOW + 999)
            .await
            .expect("state")
    );
    assert!(
        !auth::credential_still_valid(storage, &identity, NOW + 1000)
            .await
            .expect("state")
    );
    assert!(matches!(
        auth::identity_for_token(storage, token.expose(), NOW + 1000).await,
        Err(auth::AuthError::Expired)
    ));
    let Credential::Session(session) = identity.credential else {
        panic!("a session token resolves to a session")
    };
    storage
        .revoke_session(session, NOW + 2)
        .await
        .expect("revoke");
    assert!(matches!(
        auth::identity_for_token(storage, token.expose(), NOW + 3).await,
        Err(auth::AuthError::Revoked)
    ));

    // A device: its actors are bound to it; revocation and disabling take effect at once.
    let device_token = Token::generate(CredentialKind::Device).expect("random");
    let device_id = DeviceId::from_random([9; 16]);
    let actors = vec![ActorId::random(), ActorId::random()];
    storage
        .enrol_device(NewDevice {
            id: device_id.clone(),
            owner: user,
            label: "HP".into(),
            token_hash: device_token.hash(),
            actors: actors.clone(),
            enrolled_at: NOW,
        })
        .await
        .expect("enrol");
    for actor in &actors {
        assert_eq!(
            storage.actor_owner(actor).await.expect("owner"),
            Some(ActorOwner::Device(device_id.clone()))
        );
    }
    let device = auth::identity_for_token(storage, device_token.expose(), NOW)
        .await
        .expect("valid device");
    assert_eq!(device.device(), Some(&device_id));
    assert!(
        auth::credential_still_valid(storage, &device, i64::MAX)
            .await
            .expect("state")
    );
    let username = Username::parse("petugas").expect("username");
    storage
        .disable_user(&username, NOW + 5)
        .await
        .expect("disable");
    assert!(
        !auth::credential_still_valid(storage, &device, NOW + 6)
            .await
            .expect("state")
    );
    assert!(matches!(
        auth::identity_for_token(storage, device_token.expose(), NOW + 6).await,
        Err(auth::AuthError::Disabled)
    ));
    let revoked = storage
        .revoke_device(&device_id, NOW + 7)
        .await
        .expect("revoke")
        .expect("known device");
    assert_eq!(revoked.revoked_at, Some(NOW + 7));
    let again = storage
        .revoke_device(&device_id, NOW + 8)
        .await
        .expect("revoke");
    assert_eq!(
        again.and_then(|d| d.revoked_at),
        Some(NOW + 7),
        "first revocation kept"
    );
    assert!(matches!(
        auth::identity_for_token(storage, "jms_nothing", NOW).await,
        Err(auth::AuthError::Malformed)
    ));
}

/// Many tasks race to bind the same actor ids to different owners: exactly one wins each id,
/// and everyone is told who.
async fn actor_binding_story<S: Storage>(storage: Arc<S>) {
    let contested: Vec<ActorId> = (0..8).map(|_| ActorId::random()).collect();
    let mut tasks = Vec::new();
    for contender in 0..6u8 {
        let storage = Arc::clone(&storage);
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            let me = ActorOwner::Device(DeviceId::from_random([contender; 16]));
            let mut owners = Vec::new();
            for actor in &contested {
                owners.push(
                    storage
                        .bind_actor_if_unbound(actor, &me, NOW)
                        .await
                        .expect("bind"),
                );
            }
            owners
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    for (i, actor) in contested.iter().enumerate() {
        let stored = storage
            .actor_owner(actor)
            .await
            .expect("owner")
            .expect("bound");
        assert!(
            answers.iter().all(|owners| owners[i] == stored),
            "every contender is told the one owner of actor {i}"
        );
    }
    let server_actor = ActorId::random();
    assert_eq!(
        storage
            .bind_actor_if_unbound(&server_actor, &ActorOwner::Server, NOW)
            .await
            .expect("bind"),
        ActorOwner::Server
    );
    assert_eq!(
        storage
            .actor_owner(&ActorId::random())
            .await
            .expect("owner"),
        None
    );
}

/// `appenders` stores (one per server instance) append concurrently; the chain has every entry
/// once, in one line, and verifies.
async fn audit_story<S: Storage>(appenders: Vec<Arc<S>>, per_appender: usize) {
    let mut tasks = Vec::new();
    for (instance, storage) in appenders.iter().enumerate() {
        for n in 0..per_appender {
            let storage = Arc::clone(storage);
            tasks.push(tokio::spawn(async move {
                storage
                    .append(NewAuditEntry {
                        subject: Some(format!("instance {instance} entry {n}")),
                        ..NewAuditEntry::new(
                            NOW,
                            AuditAction::PersonalDataRead,
                            AuditActor::server(),
                        )
                    })
                    .await
                    .expect("append")
                    .seq
            }));
        }
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("task"));
    }
    seqs.sort_unstable();
    let total = appenders.len() * per_appender;
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    let report = verify_chain(&*appenders[0]).await.expect("verify");
    assert_eq!(report.broken, None);
    assert_eq!(report.verified, total as u64);
    let newest = appenders[0]
        .audit_entries(&AuditFilter {
            action: Some(AuditAction::PersonalDataRead),
            limit: 3,
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        newest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![total as i64, total as i64 - 1, total as i64 - 2]
    );
}

#[tokio::test]
async fn sqlite_meets_the_accounts_and_audit_contract() {
    let database = TestDatabase::sqlite();
    let path = database.data_dir().join("jemput.db");
    let storage = Arc::new(
        SqliteStorage::open(SqliteStorageConfig::new(path))
            .await
            .expect("open"),
    );
    credentials_story(&*storage).await;
    actor_binding_story(Arc::clone(&storage)).await;
    audit_story(vec![Arc::clone(&storage)], 60).await;
    storage.close().await;
}

#[tokio::test]
async fn postgres_meets_the_accounts_and_audit_contract() {
    let Some(database) =
        TestDatabase::postgres("postgres_meets_the_accounts_and_audit_contract").await
    else {
        return;
    };
    let url = database.database_url().expect("postgres url").to_owned();
    let storage = Arc::new(PostgresStorage::open(&url, 8).await.expect("open"));
    credentials_story(&*storage).await;
    actor_binding_story(Arc::clone(&storage)).await;
    // Three "instances" on one database, appending at once.
    let second = Arc::new(PostgresStorage::open(&url, 8).await.expect("open"));
    let third = Arc::new(PostgresStorage::open(&url, 8).await.expect("open"));
    audit_story(vec![Arc::clone(&storage), second, third], 30).await;
    storage.close().await;
}
