//! Test and benchmark support: a fresh PostgreSQL database per test, on the server named by
//! `CANDOR_TEST_DATABASE_URL`, dropped afterwards. Without the variable, tests that need
//! PostgreSQL say loudly that they were skipped.

use tokio_postgres::NoTls;

/// The variable naming the PostgreSQL server tests may create databases on.
pub const TEST_DATABASE_ENV: &str = "CANDOR_TEST_DATABASE_URL";

/// A database created for one test.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
    /// URL of the new database.
    pub url: String,
}

/// The server URL, or `None` after printing that `test` was skipped.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(TEST_DATABASE_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED (PostgreSQL): {test}: set {TEST_DATABASE_ENV} to run it");
            None
        }
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test PostgreSQL server");
    tokio::spawn(conn);
    client
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` (and says so) when no server is configured.
    pub async fn create(test: &str) -> Option<Self> {
        Some(Self::create_on(&server_url(test)?, "candor_t").await)
    }

    /// Creates a fresh database named `<prefix>_<random>` on the server at `admin_url`.
    pub async fn create_on(admin_url: &str, prefix: &str) -> Self {
        let admin_url = admin_url.to_string();
        let name = format!("{prefix}_{}", &uuid_like());
        admin(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        let url = with_database(&admin_url, &name);
        Self { admin_url, name, url }
    }

    /// Drops the database (closing any connections left).
    pub async fn drop_database(&self) {
        let _ = admin(&self.admin_url)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }

    /// Drops the database from synchronous code (a test's `Drop`).
    pub fn drop_blocking(&self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _ = admin(&admin_url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path_of_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h/test?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
    }
}
