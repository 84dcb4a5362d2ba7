//! A fresh database per test: a SQLite file in a temporary directory, or a new PostgreSQL
//! database on the server named by `JEMPUT_TEST_DATABASE_URL`.

use std::path::PathBuf;

use sqlx::Connection;
use tempfile::TempDir;

/// The variable that points tests at PostgreSQL (not `DATABASE_URL`, which would switch
/// sqlx macros into live mode).
pub const POSTGRES_ENV: &str = "JEMPUT_TEST_DATABASE_URL";
/// When set (CI sets it), a missing PostgreSQL makes PostgreSQL tests fail instead of skip.
pub const REQUIRE_POSTGRES_ENV: &str = "JEMPUT_REQUIRE_POSTGRES";

pub enum TestDatabase {
    Sqlite {
        dir: TempDir,
    },
    /// Dropped (`WITH (FORCE)`) when the value is dropped, so test databases do not pile up
    /// on the machine's PostgreSQL.
    Postgres {
        url: String,
        dir: TempDir,
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        TestDatabase::Sqlite {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A new, empty PostgreSQL database, or `None` (with a clear message) when
    /// `JEMPUT_TEST_DATABASE_URL` is not set and PostgreSQL is not required.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(base) = std::env::var(POSTGRES_ENV) else {
            assert!(
                std::env::var_os(REQUIRE_POSTGRES_ENV).is_none(),
                "{test}: {REQUIRE_POSTGRES_ENV} is set but {POSTGRES_ENV} is not"
            );
            eprintln!("SKIPPED {test}: set {POSTGRES_ENV}=postgres://… to run it on PostgreSQL");
            return None;
        };
        let name = format!("jemput_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{test}: cannot connect to {POSTGRES_ENV}: {e}"));
        // `name` is ours (hex digits), never input: safe to splice into DDL.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = replace_database_name(&base, &name);
        Some(TestDatabase::Postgres {
            url,
            dir: tempfile::tempdir().expect("temporary directory"),
            admin_url: base,
            name,
        })
    }

    /// Both dialects (PostgreSQL only when configured), for tests that must pass on each.
    pub async fn every(test: &str) -> Vec<Self> {
        let mut all = vec![Self::sqlite()];
        all.extend(Self::postgres(test).await);
        all
    }

    pub fn data_dir(&self) -> PathBuf {
        match self {
            TestDatabase::Sqlite { dir } | TestDatabase::Postgres { dir, .. } => {
                dir.path().to_path_buf()
            }
        }
    }

    pub fn database_url(&self) -> Option<&str> {
        match self {
            TestDatabase::Sqlite { .. } => None,
            TestDatabase::Postgres { url, .. } => Some(url),
        }
    }

    pub fn dialect(&self) -> &'static str {
        match self {
            TestDatabase::Sqlite { .. } => "sqlite",
            TestDatabase::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop may run inside an async runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                // `name` is ours (hex digits), never input.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(error)) | Err(error) = dropped.map_err(|_| "panicked".to_owned()) {
            eprintln!("could not drop test database: {error}");
        }
    }
}

/// `postgres://user@host:5432/test?x=y` with the path replaced by `/name`.
fn replace_database_name(url: &str, name: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let path_start = without_query[scheme_end..]
        .find('/')
        .map_or(without_query.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &without_query[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_database_name;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database_name("postgres://u@127.0.0.1:5432/test", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database_name("postgres://127.0.0.1?sslmode=disable", "x"),
            "postgres://127.0.0.1/x?sslmode=disable"
        );
    }
}
