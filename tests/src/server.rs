//! Starts the real `jemput` server process on a random port.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TestDatabase;

/// A running `jemput serve` process. Killed when dropped.
pub struct TestServer {
    binary: PathBuf,
    child: Option<Child>,
    base_url: String,
    extra_args: Vec<String>,
    /// Trusted roots for HTTPS requests to a server started with a dev certificate.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub database: TestDatabase,
}

impl TestServer {
    /// Starts `binary serve` on `127.0.0.1:0` with the given fresh database and waits until
    /// it prints its address.
    pub async fn start(binary: &str, database: TestDatabase) -> Self {
        Self::start_with_args(binary, database, &[]).await
    }

    pub async fn start_with_args(binary: &str, database: TestDatabase, extra: &[&str]) -> Self {
        Self::start_on(binary, database, extra, "127.0.0.1:0").await
    }

    /// Starts `binary serve` over HTTPS with a fresh `jemput dev-cert` certificate, trusted by
    /// this harness's clients. The certificate's directory must outlive the server.
    pub async fn start_tls(binary: &str, database: TestDatabase) -> (Self, DevCertificate) {
        let certificate = DevCertificate::generate(binary);
        let server = Self::start_tls_with(binary, database, &certificate).await;
        (server, certificate)
    }

    /// Starts `binary serve` over HTTPS with `certificate`, trusted by this harness's clients
    /// (several servers may share one, e.g. to show that one's session tickets are unknown to
    /// another).
    pub async fn start_tls_with(
        binary: &str,
        database: TestDatabase,
        certificate: &DevCertificate,
    ) -> Self {
        let mut server = Self::start_with_args(
            binary,
            database,
            &[
                "--tls-cert",
                certificate.cert.to_str().expect("utf-8 path"),
                "--tls-key",
                certificate.key.to_str().expect("utf-8 path"),
            ],
        )
        .await;
        assert!(server.base_url().starts_with("https://"));
        server.trust_certificate(&certificate.cert);
        server
    }

    /// Starts on a given address, e.g. one a client was already told to dial.
    pub async fn start_on(
        binary: &str,
        database: TestDatabase,
        extra: &[&str],
        listen: &str,
    ) -> Self {
        let mut server = Self {
            binary: PathBuf::from(binary),
            child: None,
            base_url: String::new(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            tls: None,
            database,
        };
        server.launch(listen).await;
        server
    }

    async fn launch(&mut self, listen: &str) {
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(self.database.data_dir())
            .args(&self.extra_args)
            .env_remove("DATABASE_URL")
            .env_remove("JEMPUT_DATABASE_URL")
            .env(
                "JEMPUT_LOG",
                std::env::var("JEMPUT_TEST_SERVER_LOG")
                    .unwrap_or_else(|_| "info,jemput_server=debug".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = self.database.database_url() {
            command.arg("--database-url").arg(url);
        }
        let mut child = command.spawn().expect("start jemput");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("jemput printed its address within 60 s")
            .expect("read jemput stdout")
            .expect("jemput exited before printing its address");
        let url = line
            .strip_prefix("jemput listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from jemput: {line}"));
        self.base_url = url.to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Trust the certificate in `cert_pem` for this server's HTTPS API.
    pub fn trust_certificate(&mut self, cert_pem: &std::path::Path) {
        self.tls = Some(std::sync::Arc::new(crate::tls::client_config_trusting(
            cert_pem,
        )));
    }

    pub(crate) fn tls_client(&self) -> Option<&std::sync::Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The server binary, for `jemput admin` and friends.
    pub fn binary(&self) -> &std::path::Path {
        &self.binary
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `ws://127.0.0.1:PORT/v1/ws` (or wss).
    pub fn ws_url(&self) -> String {
        let rest = self
            .base_url
            .strip_prefix("http")
            .expect("base url starts with http");
        format!("ws{rest}/v1/ws")
    }

    pub fn address(&self) -> String {
        self.base_url
            .split("://")
            .nth(1)
            .expect("base url has a scheme")
            .to_owned()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILL: nothing gets a chance to flush. What was acknowledged must survive this.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill jemput");
        }
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited successfully.
    pub async fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Some(pid) = child.id() {
            let status = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -TERM failed");
        }
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("jemput exits within 60 s of SIGTERM")
            .expect("wait for jemput");
        status.success()
    }

    /// Starts the server again on the same database and the same port.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.kill().await;
        }
        let address = self.address();
        self.launch(&address).await;
    }

    /// GET a path over plain HTTP; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.address(), path).await
    }
}

/// A minimal HTTP/1.1 GET over a raw TCP stream, enough for health and metrics endpoints.
pub async fn http_get(address: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to server");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A loopback address with a port that was free a moment ago.
pub fn free_local_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").to_string()
}

/// A self-signed certificate for localhost made by `jemput dev-cert` in a temporary directory.
pub struct DevCertificate {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevCertificate {
    /// Runs `binary dev-cert` into a new temporary directory.
    pub fn generate(binary: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new(binary)
            .args(["dev-cert", "--out-dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run jemput dev-cert");
        assert!(status.success(), "jemput dev-cert failed");
        Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        }
    }
}
