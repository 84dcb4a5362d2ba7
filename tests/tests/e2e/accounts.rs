//! Accounts, sessions, devices and the audit log, end to end: the real `jemput` binary, its
//! HTTP API and its `jemput admin` CLI, on SQLite and (when configured) PostgreSQL.

use std::process::Output;
use std::time::Duration;

use jemput_tests::provision::{Credentials, HOME_DISTRICT, OTHER_DISTRICT};
use jemput_tests::{TestDatabase, TestServer, wait_until};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::JEMPUT;

/// A synthetic NIK (Tegalrejo, woman born 5 September 1990, serial 0001).
const NIK: &str = "3471014509900001";
const OTHER_NIK: &str = "3471011203850002";

/// A server that has opened its database: `jemput admin` may run beside it from then on (the
/// address is printed before migrations run, and two processes must not migrate at once).
async fn start(database: TestDatabase) -> TestServer {
    let server = TestServer::start(JEMPUT, database).await;
    wait_until(
        Duration::from_secs(30),
        "the server to be ready",
        || async { server.get("/readyz").await.0 == 200 },
    )
    .await;
    server
}

/// One request with explicit headers; returns the status, the response headers (lower-case
/// names) and the body. For what `TestServer::request` does not show: `Retry-After`, `ETag`.
async fn exchange(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.address();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn admin_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "jemput admin failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn login_status(server: &TestServer, username: &str, password: &str) -> (u16, Value) {
    server
        .request(
            "POST",
            "/v1/auth/login",
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .await
}

fn device_of(credentials: &Credentials) -> (&str, &str) {
    let device = credentials
        .device
        .as_ref()
        .expect("an officer has a device");
    (device.id.as_str(), device.token.as_str())
}

/// One row of the matrix: what, method, path, body, and the status each caller gets.
type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a Value>, [u16; 6]);

/// Who may call what. Each row: a request; each column: a caller. Statuses are the contract
/// (200/201/204 allowed, 401 not authenticated, 403 refused).
#[tokio::test]
async fn role_action_matrix_over_the_endpoints() {
    for database in TestDatabase::every("role_action_matrix_over_the_endpoints").await {
        let dialect = database.dialect();
        let server = start(database).await;
        let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
        let far_officer = server.officer("petugas-jauh", &[OTHER_DISTRICT]).await;
        let supervisor = server
            .person("verifikator", "supervisor", &["34.71"], &["Disdukcapil"])
            .await;
        let admin = server.person("admin", "admin", &[], &[]).await;
        let (_, officer_device) = device_of(&officer);
        let (far_device_id, _) = device_of(&far_officer);

        let callers: [(&str, Option<&str>); 6] = [
            ("officer/session", Some(&officer.session)),
            ("officer/device", Some(officer_device)),
            ("supervisor", Some(&supervisor.session)),
            ("admin", Some(&admin.session)),
            ("no token", None),
            (
                "forged token",
                Some("jms_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ),
        ];
        let far_revoke = format!("/v1/devices/{far_device_id}/revoke");
        let citizen = json!({ "nik": NIK });
        let enrol = json!({ "label": "HP cadangan" });
        // (what, method, path, body, expected per caller in the order above)
        #[rustfmt::skip]
        let rows: [Row<'_>; 7] = [
            ("services", "GET", "/v1/services", None, [200, 200, 200, 200, 401, 401]),
            ("me", "GET", "/v1/auth/me", None, [200, 200, 200, 200, 401, 401]),
            ("enrol", "POST", "/v1/devices", Some(&enrol), [201, 403, 403, 403, 401, 401]),
            ("devices", "GET", "/v1/devices", None, [200, 200, 200, 200, 401, 401]),
            ("audit", "GET", "/v1/audit", None, [403, 403, 403, 200, 401, 401]),
            ("citizen", "POST", "/v1/audit/citizen", Some(&citizen), [403, 403, 403, 200, 401, 401]),
            // Another region's officer: the supervisor of 34.71 may not; the admin may.
            ("revoke far device", "POST", &far_revoke, None, [403, 403, 403, 200, 401, 401]),
        ];
        let mut failures = Vec::new();
        for (what, method, path, body, expected) in rows {
            for ((caller, token), want) in callers.iter().zip(expected) {
                let (status, reply) = server.request(method, path, *token, body).await;
                if status != want {
                    failures.push(format!(
                        "{dialect}: {caller} × {what}: {status} (want {want}) {reply}"
                    ));
                }
                if status >= 400 {
                    for key in ["error", "message", "message_en"] {
                        if !reply[key].is_string() {
                            failures.push(format!("{caller} × {what}: no {key} in {reply}"));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");

        // The supervisor may revoke a device of an officer in their region.
        let (home_device_id, home_token) = device_of(&officer);
        let (status, body) = server
            .request(
                "POST",
                &format!("/v1/devices/{home_device_id}/revoke"),
                Some(&supervisor.session),
                None,
            )
            .await;
        assert_eq!(status, 200, "{dialect}: {body}");
        assert!(body["revoked_at"].is_i64());
        let (status, _) = server
            .request("GET", "/v1/auth/me", Some(home_token), None)
            .await;
        assert_eq!(status, 401, "{dialect}: revoked by the supervisor");
        // The officer's own session is untouched.
        let (status, _) = server
            .request("GET", "/v1/auth/me", Some(&officer.session), None)
            .await;
        assert_eq!(status, 200, "{dialect}");
    }
}

#[tokio::test]
async fn password_guessing_is_throttled_with_a_clear_429() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    for attempt in 1..=5 {
        let (status, body) = login_status(&server, "petugas", &format!("tebakan-{attempt}")).await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
        assert_eq!(body["error"], "invalid_credentials");
    }
    let body = json!({"username": "petugas", "password": officer.password}).to_string();
    let (status, headers, text) = exchange(
        &server,
        "POST",
        "/v1/auth/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    // Even the right password is refused now: the password is not even checked.
    assert_eq!(status, 429, "{text}");
    let retry: u64 = header(&headers, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry}");
    let reply: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(reply["error"], "too_many_attempts");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("detik"))
    );
    // Unknown usernames and other accounts from the same address are refused once the
    // address has used its allowance (20 failures per window).
    for i in 0..15 {
        let (status, _) = login_status(&server, &format!("tidak-ada-{i}"), "salah-salah").await;
        assert_eq!(status, 401, "guess {i}");
    }
    let (status, body) = login_status(&server, "orang-lain", "salah-salah").await;
    assert_eq!(status, 429, "{body}");
    // Every failure is in the audit log; none records the guessed password.
    let audit = server.admin(&["audit", "verify"], None);
    admin_ok(&audit);
}

#[tokio::test]
async fn a_session_token_reused_after_logout_is_refused() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let second = server.login("petugas", &officer.password).await;
    let (status, _) = server
        .request("POST", "/v1/auth/logout", Some(&officer.session), None)
        .await;
    assert_eq!(status, 204);
    for (method, path) in [
        ("GET", "/v1/auth/me"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/services"),
    ] {
        let (status, body) = server
            .request(method, path, Some(&officer.session), None)
            .await;
        assert_eq!(status, 401, "{method} {path} after logout: {body}");
        assert_eq!(body["error"], "unauthenticated");
    }
    // Only that session ended: another session and the device still work.
    let (status, _) = server
        .request("GET", "/v1/auth/me", Some(&second), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .request("GET", "/v1/auth/me", Some(officer.token()), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credential"], "device");
    // A device token cannot "log out": it is revoked instead.
    let (status, body) = server
        .request("POST", "/v1/auth/logout", Some(officer.token()), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "session_required");
}

#[tokio::test]
async fn a_revoked_device_is_refused_on_its_next_request() {
    for database in TestDatabase::every("a_revoked_device_is_refused_on_its_next_request").await {
        let server = start(database).await;
        let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
        let (device_id, token) = device_of(&officer);
        let (status, body) = server
            .request("GET", &format!("/v1/auth/me?token={token}"), None, None)
            .await;
        assert_eq!(status, 200, "token in the query string: {body}");
        assert_eq!(body["device_id"], device_id);

        let revoked = admin_ok(&server.admin(&["device", "revoke", device_id], None));
        assert!(revoked.contains(device_id), "{revoked}");
        let (status, _) = server
            .request("GET", "/v1/auth/me", Some(token), None)
            .await;
        assert_eq!(status, 401, "revoked device, header");
        let (status, _) = server
            .request("GET", &format!("/v1/services?token={token}"), None, None)
            .await;
        assert_eq!(status, 401, "revoked device, query string");
        // Revoking again changes nothing; the officer's session still works and can enrol anew.
        admin_ok(&server.admin(&["device", "revoke", device_id], None));
        let (status, body) = server
            .request("POST", "/v1/devices", Some(&officer.session), None)
            .await;
        assert_eq!(status, 201, "{body}");
        let fresh = body["device_token"].as_str().expect("token");
        assert_ne!(fresh, token);
        let actors = body["actor_ids"].as_array().expect("actor ids");
        assert_eq!(actors.len(), 4);
        assert!(
            actors
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.len() == 32))
        );
        let (status, _) = server
            .request("GET", "/v1/auth/me", Some(fresh), None)
            .await;
        assert_eq!(status, 200);
        let listed = admin_ok(&server.admin(&["device", "list", "--user", "petugas"], None));
        assert!(
            listed.contains("revoked") && listed.contains("active"),
            "{listed}"
        );
    }
}

#[tokio::test]
async fn wrong_and_malformed_tokens_are_refused() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let mut altered = officer.session.clone();
    let last = altered.pop().expect("non-empty");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for (name, headers) in [
        (
            "altered session",
            vec![("Authorization", format!("Bearer {altered}"))],
        ),
        (
            "session as device",
            vec![(
                "Authorization",
                format!("Bearer jmd_{}", &officer.session[4..]),
            )],
        ),
        (
            "not ours",
            vec![(
                "Authorization",
                "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned(),
            )],
        ),
        (
            "basic",
            vec![("Authorization", "Basic cGV0dWdhczpzYW5kaQ==".to_owned())],
        ),
        ("empty", vec![("Authorization", "Bearer ".to_owned())]),
        ("none", vec![]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, response_headers, body) =
            exchange(&server, "GET", "/v1/auth/me", &headers, "").await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(
            header(&response_headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer"))
        );
        assert!(
            !body.contains(&officer.session[4..]),
            "{name}: the token is echoed"
        );
    }
    let (status, body) = login_status(&server, "petugas", "bukan-sandinya").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_credentials");
    let (status, unknown) = login_status(&server, "tidak-ada", "bukan-sandinya").await;
    assert_eq!(status, 401);
    assert_eq!(unknown, body, "unknown and known usernames answer alike");
}

#[tokio::test]
async fn a_disabled_user_is_refused_everywhere() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    admin_ok(&server.admin(&["user", "disable", "petugas"], None));
    for token in [officer.session.as_str(), officer.token()] {
        let (status, _) = server
            .request("GET", "/v1/auth/me", Some(token), None)
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = login_status(&server, "petugas", &officer.password).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "account_disabled");
    let listed = admin_ok(&server.admin(&["user", "list"], None));
    assert!(
        listed.contains("petugas") && listed.contains("disabled"),
        "{listed}"
    );
}

#[tokio::test]
async fn admin_cli_manages_regions_and_passwords() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    // Regions: replaced, checked against the role and the Kemendagri table.
    admin_ok(&server.admin(
        &[
            "user",
            "assign-region",
            "petugas",
            "34.71.02",
            "34.71.01.1001",
        ],
        None,
    ));
    let (_, me) = server
        .request("GET", "/v1/auth/me", Some(officer.token()), None)
        .await;
    assert_eq!(me["user"]["regions"], json!(["34.71.01.1001", "34.71.02"]));
    let too_wide = server.admin(&["user", "assign-region", "petugas", "34.71"], None);
    assert!(!too_wide.status.success());
    let unknown = server.admin(&["user", "assign-region", "petugas", "34.99.99"], None);
    assert!(!unknown.status.success());
    // A generated password is shown once and works; the old sessions end.
    let reset = admin_ok(&server.admin(&["user", "reset-password", "petugas"], None));
    let password = reset
        .lines()
        .find_map(|line| line.split("): ").nth(1))
        .expect("the generated password is printed")
        .trim()
        .to_owned();
    let (status, _) = server
        .request("GET", "/v1/auth/me", Some(&officer.session), None)
        .await;
    assert_eq!(status, 401, "sessions end on a password reset");
    let (status, _) = login_status(&server, "petugas", &officer.password).await;
    assert_eq!(status, 401);
    let (status, _) = login_status(&server, "petugas", &password).await;
    assert_eq!(status, 200);
    // A password from standard input; too short is refused.
    let short = server.admin(
        &["user", "reset-password", "petugas", "--password-stdin"],
        Some("pendek\n"),
    );
    assert!(!short.status.success());
    admin_ok(&server.admin(
        &["user", "reset-password", "petugas", "--password-stdin"],
        Some("sandi-baru-yang-panjang\n"),
    ));
    let (status, _) = login_status(&server, "petugas", "sandi-baru-yang-panjang").await;
    assert_eq!(status, 200);
    // Usernames are unique.
    let again = server.admin(
        &[
            "user",
            "add",
            "petugas",
            "--role",
            "officer",
            "--region",
            HOME_DISTRICT,
        ],
        None,
    );
    assert!(!again.status.success());
    let json_list = admin_ok(&server.admin(&["user", "list", "--json"], None));
    let first: Value =
        serde_json::from_str(json_list.lines().next().expect("a line")).expect("json");
    assert_eq!(first["username"], "petugas");
}

/// Runs `statements` on the test database directly, as someone with access to the server's
/// files would; stops at the first that fails.
async fn tamper(server: &TestServer, statements: &[&str]) -> Result<(), sqlx::Error> {
    match server.database.database_url() {
        Some(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await?;
            for statement in statements {
                sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
                    .execute(&mut connection)
                    .await?;
            }
        }
        None => {
            let path = server.database.data_dir().join("jemput.db");
            let url = format!("sqlite://{}", path.display());
            let mut connection = sqlx::SqliteConnection::connect(&url).await?;
            for statement in statements {
                sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
                    .execute(&mut connection)
                    .await?;
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn audit_verify_detects_a_tampered_entry() {
    for database in TestDatabase::every("audit_verify_detects_a_tampered_entry").await {
        let dialect = database.dialect();
        let server = start(database).await;
        let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
        for _ in 0..3 {
            server.login("petugas", &officer.password).await;
        }
        let intact = admin_ok(&server.admin(&["audit", "verify"], None));
        assert!(intact.contains("intact"), "{dialect}: {intact}");

        // The database refuses changes to the log...
        let update = "UPDATE audit_log SET subject = 'someone else' WHERE seq = 3";
        let delete = "DELETE FROM audit_log WHERE seq = 2";
        for statement in [update, delete] {
            assert!(
                tamper(&server, &[statement]).await.is_err(),
                "{dialect}: the append-only trigger let through: {statement}"
            );
        }
        // ...but whoever can drop the trigger can change it; the chain shows where.
        let drop_trigger = if dialect == "postgres" {
            "DROP TRIGGER audit_log_no_change ON audit_log"
        } else {
            "DROP TRIGGER audit_log_no_update"
        };
        tamper(&server, &[drop_trigger, update])
            .await
            .expect("tamper");
        let broken = server.admin(&["audit", "verify"], None);
        assert!(
            !broken.status.success(),
            "{dialect}: verify passed a tampered log"
        );
        let stdout = String::from_utf8_lossy(&broken.stdout);
        assert!(stdout.contains("entry 3"), "{dialect}: {stdout}");
        assert!(
            stdout.contains("entries 1 to 2 verified"),
            "{dialect}: {stdout}"
        );
    }
}

#[tokio::test]
async fn a_citizens_trail_is_found_by_nik_without_the_nik_in_the_log() {
    for database in
        TestDatabase::every("a_citizens_trail_is_found_by_nik_without_the_nik_in_the_log").await
    {
        let dialect = database.dialect();
        let server = start(database).await;
        let admin = server.person("admin", "admin", &[], &[]).await;
        let (status, first) = server
            .request(
                "POST",
                "/v1/audit/citizen",
                Some(&admin.session),
                Some(&json!({"nik": NIK})),
            )
            .await;
        assert_eq!(status, 200, "{dialect}: {first}");
        let entries = first["entries"].as_array().expect("entries");
        assert_eq!(
            entries.len(),
            1,
            "{dialect}: the lookup itself is on the trail"
        );
        assert_eq!(entries[0]["action"], "audit.citizen_trail_read");
        assert_eq!(entries[0]["username"], "admin");
        let key = entries[0]["citizen_key"].as_str().expect("key").to_owned();
        assert!(!key.contains(NIK));

        // The header form finds the same citizen; another NIK is another citizen.
        let token = format!("Bearer {}", admin.session);
        let (status, _, text) = exchange(
            &server,
            "GET",
            "/v1/audit/citizen",
            &[("Authorization", &token), ("Jemput-NIK", NIK)],
            "",
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let second: Value = serde_json::from_str(&text).expect("json");
        let keys: Vec<&str> = second["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["citizen_key"].as_str())
            .collect();
        assert_eq!(keys, vec![key.as_str(), key.as_str()], "{dialect}");
        let (_, other) = server
            .request(
                "POST",
                "/v1/audit/citizen",
                Some(&admin.session),
                Some(&json!({"nik": OTHER_NIK})),
            )
            .await;
        assert_eq!(other["entries"].as_array().map(Vec::len), Some(1));
        assert_ne!(
            other["entries"][0]["citizen_key"].as_str(),
            Some(key.as_str())
        );

        // Never in the URL: a NIK there is not even read.
        let (status, body) = server
            .request(
                "GET",
                &format!("/v1/audit/citizen?nik={NIK}"),
                Some(&admin.session),
                None,
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = server
            .request(
                "POST",
                "/v1/audit/citizen",
                Some(&admin.session),
                Some(&json!({"nik": "1234"})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_nik");

        // The NIK is nowhere in the audit table.
        let dump = audit_table_text(&server).await;
        assert!(
            dump.contains(&key),
            "{dialect}: the dump has the citizen key"
        );
        assert!(
            !dump.contains(NIK) && !dump.contains(OTHER_NIK),
            "{dialect}: NIK stored in clear"
        );
        if server.database.database_url().is_none() {
            // Nor anywhere in the SQLite files (database and write-ahead log).
            for file in ["jemput.db", "jemput.db-wal"] {
                let path = server.database.data_dir().join(file);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                assert!(
                    !bytes.windows(NIK.len()).any(|w| w == NIK.as_bytes()),
                    "{file} holds the NIK"
                );
            }
        }
    }
}

/// Every column of every audit entry as text (bytes as hex).
async fn audit_table_text(server: &TestServer) -> String {
    let columns = "seq, at, action, actor_user_id, actor_username, device_id, client_address, \
        subject, citizen_key, detail, prev_hash, entry_hash";
    let rows: Vec<String> = match server.database.database_url() {
        Some(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT concat_ws('|', seq, at, action, actor_user_id, actor_username, device_id, \
                 client_address, subject, encode(citizen_key, 'hex'), detail, \
                 encode(prev_hash, 'hex'), encode(entry_hash, 'hex')) FROM audit_log /* {columns} */"
            )))
            .fetch_all(&mut connection)
            .await
            .expect("dump")
        }
        None => {
            let path = server.database.data_dir().join("jemput.db");
            let mut connection =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("open");
            sqlx::query_scalar(
                "SELECT seq || '|' || at || '|' || action || '|' || ifnull(actor_user_id, '') || '|' || \
                 ifnull(actor_username, '') || '|' || ifnull(device_id, '') || '|' || \
                 ifnull(client_address, '') || '|' || ifnull(subject, '') || '|' || \
                 lower(hex(ifnull(citizen_key, x''))) || '|' || ifnull(detail, '') || '|' || \
                 lower(hex(prev_hash)) || '|' || lower(hex(entry_hash)) FROM audit_log",
            )
            .fetch_all(&mut connection)
            .await
            .expect("dump")
        }
    };
    rows.join("\n")
}

#[tokio::test]
async fn the_service_catalogue_is_cached_with_an_etag() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let auth = format!("Bearer {}", officer.token());
    let (status, headers, body) = exchange(
        &server,
        "GET",
        "/v1/services",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let services: Value = serde_json::from_str(&body).expect("catalogue JSON");
    assert!(
        services
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["code"] == "DUKCAPIL-KTP-EL-BARU"))
    );
    let etag = header(&headers, "etag").expect("ETag").to_owned();
    let (status, headers, body) = exchange(
        &server,
        "GET",
        "/v1/services",
        &[("Authorization", &auth), ("If-None-Match", &etag)],
        "",
    )
    .await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    let (status, _, _) = exchange(
        &server,
        "GET",
        "/v1/services",
        &[
            ("Authorization", &auth),
            ("If-None-Match", "\"sha256-stale\""),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn audit_log_lists_logins_enrolments_and_revocations_with_filters() {
    let server = start(TestDatabase::sqlite()).await;
    let officer = server.officer("petugas", &[HOME_DISTRICT]).await;
    let admin = server.person("admin", "admin", &[], &[]).await;
    let (status, _) = login_status(&server, "petugas", "salah-sandi-nya").await;
    assert_eq!(status, 401);
    let (device_id, _) = device_of(&officer);
    server
        .request(
            "POST",
            &format!("/v1/devices/{device_id}/revoke"),
            Some(&admin.session),
            None,
        )
        .await;
    let (status, page) = server
        .request("GET", "/v1/audit", Some(&admin.session), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "user.created",
        "login.succeeded",
        "login.failed",
        "device.enrolled",
        "device.revoked",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    // Newest first, numbered without gaps.
    let seqs: Vec<i64> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");

    let (_, failed) = server
        .request(
            "GET",
            "/v1/audit?action=login.failed&user=petugas",
            Some(&admin.session),
            None,
        )
        .await;
    let failed = failed["entries"].as_array().expect("entries");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["client_address"], "127.0.0.1");
    assert!(
        !failed[0].to_string().contains("salah-sandi-nya"),
        "the guess is not recorded"
    );

    // Pages: two at a time, following next_before to the first entry.
    let mut before = None::<i64>;
    let mut seen = Vec::new();
    loop {
        let path = match before {
            Some(b) => format!("/v1/audit?limit=2&before={b}"),
            None => "/v1/audit?limit=2".to_owned(),
        };
        let (_, page) = server
            .request("GET", &path, Some(&admin.session), None)
            .await;
        seen.extend(
            page["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter_map(|e| e["seq"].as_i64()),
        );
        match page["next_before"].as_i64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.last(), Some(&1));
    assert!(seen.windows(2).all(|w| w[0] == w[1] + 1), "{seen:?}");
    let (status, body) = server
        .request(
            "GET",
            "/v1/audit?action=made.up",
            Some(&admin.session),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
