//! Accounts and devices for end-to-end tests: created with the real `jemput admin` CLI and the
//! real HTTP API, so every test connects the way a field device or a console does.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestServer;

/// The region most tests work in: Tegalrejo, Kota Yogyakarta.
pub const HOME_DISTRICT: &str = "34.71.01";
pub const HOME_VILLAGE: &str = "34.71.01.1001";
/// Somewhere else entirely: Surabaya.
pub const OTHER_DISTRICT: &str = "35.78.01";
pub const OTHER_VILLAGE: &str = "35.78.01.1001";

const PASSWORD: &str = "kata-sandi-uji-yang-panjang";

/// A new KTP-el application for a synthetic citizen in [`HOME_VILLAGE`], as an officer's SDK
/// captures it (SDK tests and the batch sync benchmarks).
pub fn ktp_application(nik: &str, name: &str) -> jemput_client_sdk::client::NewApplication {
    use jemput_client_sdk::client::{Applicant, NewApplication};
    use jemput_domain::{FieldValue, Nik, RegionCode, ServiceCode, jakarta_today};

    let today = jakarta_today(1_780_000_000);
    NewApplication {
        service: ServiceCode::parse("DUKCAPIL-KTP-EL-BARU").expect("service"),
        village: RegionCode::parse(HOME_VILLAGE).expect("village"),
        applicant: Applicant {
            nik: Nik::parse(nik, today).expect("synthetic NIK"),
            kk: None,
            name: name.into(),
            birth_date: None,
            sex: None,
            phone: None,
            address: None,
        },
        fields: [
            ("recording_status", FieldValue::Text("belum_rekam".into())),
            ("marital_status", FieldValue::Text("kawin".into())),
            ("home_recording_needed", FieldValue::Boolean(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        consent_basis: None,
        visit: None,
    }
}

/// Points an enrolled SDK device at another URL of its server, e.g. a link emulator in front
/// of it, keeping its token and sync state.
pub async fn point_device_at(
    client: &jemput_client_sdk::Client,
    url: &str,
) -> Result<(), jemput_client_sdk::StoreError> {
    let mut tx = client.store().begin().await?;
    sqlx::query("UPDATE enrolment SET server_url = ? WHERE id = 1")
        .bind(url)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// [`ktp_application`] for the synthetic Siti Aminah, 3471011503850001.
pub fn sample_application() -> jemput_client_sdk::client::NewApplication {
    ktp_application("3471011503850001", "Siti Aminah")
}

/// What a test holds for one person (and their phone, for an officer).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A login session token (browser console).
    pub session: String,
    pub device: Option<Device>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub token: String,
    /// Actor ids (hex) registered to the device at enrolment.
    pub actors: Vec<String>,
}

impl Credentials {
    /// The device token for an officer, else the session token.
    pub fn token(&self) -> &str {
        self.device
            .as_ref()
            .map_or(self.session.as_str(), |device| device.token.as_str())
    }
}

impl TestServer {
    /// Runs `jemput admin <args>` against this server's database.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = std::process::Command::new(self.binary());
        command
            .arg("admin")
            .arg("--data-dir")
            .arg(self.database.data_dir())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("JEMPUT_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = self.database.database_url() {
            command.arg("--database-url").arg(url);
        }
        let mut child = command.spawn().expect("start jemput admin");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin piped");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("wait for jemput admin")
    }

    /// Creates an account (`role`: officer, supervisor, admin) in `regions`.
    pub fn create_user(&self, username: &str, role: &str, regions: &[&str], agencies: &[&str]) {
        let mut args = vec!["user", "add", username, "--role", role, "--password-stdin"];
        for region in regions {
            args.extend(["--region", region]);
        }
        for agency in agencies {
            args.extend(["--agency", agency]);
        }
        let output = self.admin(&args, Some(&format!("{PASSWORD}\n")));
        assert!(
            output.status.success(),
            "jemput admin user add {username} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .request(
                "POST",
                "/v1/auth/login",
                None,
                Some(&json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// An officer in `regions` with an enrolled phone.
    pub async fn officer(&self, username: &str, regions: &[&str]) -> Credentials {
        self.create_user(username, "officer", regions, &[]);
        let session = self.login(username, PASSWORD).await;
        let (status, body) = self
            .request(
                "POST",
                "/v1/devices",
                Some(&session),
                Some(&json!({"label": format!("HP {username}")})),
            )
            .await;
        assert_eq!(status, 201, "enrol a device for {username}: {body}");
        let device = Device {
            id: body["device_id"].as_str().expect("device_id").to_owned(),
            token: body["device_token"]
                .as_str()
                .expect("device_token")
                .to_owned(),
            actors: body["actor_ids"]
                .as_array()
                .expect("actor_ids")
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
        };
        Credentials {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
            session,
            device: Some(device),
        }
    }

    /// A supervisor (or admin) with a login session.
    pub async fn person(
        &self,
        username: &str,
        role: &str,
        regions: &[&str],
        agencies: &[&str],
    ) -> Credentials {
        self.create_user(username, role, regions, agencies);
        let session = self.login(username, PASSWORD).await;
        Credentials {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
            session,
            device: None,
        }
    }

    /// The WebSocket URL carrying `token`.
    pub fn ws_url_for(&self, token: &str) -> String {
        format!("{}?token={token}", self.ws_url())
    }

    /// One HTTP/1.1 request with an optional bearer token and JSON body; returns the status
    /// and the parsed JSON body (`Value::Null` when the body is not JSON).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, text) = self.request_raw(method, path, token, &[], body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`request`](Self::request) with extra headers, returning the raw body.
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, String) {
        let address = self.address();
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect to server");
        let mut stream: Box<dyn Stream> = match self.tls_client() {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config));
                let name =
                    rustls::pki_types::ServerName::try_from("localhost").expect("server name");
                Box::new(connector.connect(name, tcp).await.expect("TLS handshake"))
            }
            None => Box::new(tcp),
        };
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
            payload.len()
        );
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write request");
        stream
            .write_all(payload.as_bytes())
            .await
            .expect("write body");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        parse_response(&response)
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn parse_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("HTTP status line");
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
