//! The registry on PostgreSQL, for several `vesper serve` instances on one database: a pool of
//! async connections (tokio-postgres through deadpool), the same transactions and audit rows as
//! SQLite, claims that skip rows another instance has locked, and device events carried to
//! every instance by `LISTEN`/`NOTIFY`.

mod eol;
mod events;
mod registry;
pub(crate) mod schema;

use std::str::FromStr as _;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{RegistryError, Result};

pub use events::CHANNEL as EVENT_CHANNEL;

/// Most pooled connections per instance.
const POOL_SIZE: usize = 16;

/// The registry on a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only where it points.
        f.debug_struct("PgStore")
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, or a key=value string) and
    /// brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| RegistryError::Invalid(format!("database URL: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| RegistryError::Pool(e.to_string()))?;
        let store = Self { pool, config };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| RegistryError::Pool(e.to_string()))
    }

    /// Whether the registry tables hold no row at all (`vesper migrate` writes only there).
    pub async fn is_empty(&self) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM batches) + (SELECT count(*) FROM tokens)
                      + (SELECT count(*) FROM audit) + (SELECT count(*) FROM outbox)
                      + (SELECT count(*) FROM deploy_runs)",
                &[],
            )
            .await?;
        Ok(row.get::<_, i64>(0) == 0)
    }

    /// A pooled connection for copying rows in (`vesper migrate`).
    pub async fn raw(&self) -> Result<deadpool_postgres::Client> {
        self.client().await
    }
}
