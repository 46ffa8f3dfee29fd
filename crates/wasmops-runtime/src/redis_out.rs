//! Outbound Redis for Spin components (`fermyon:spin/redis@2.0.0`,
//! `spin:redis/redis@3.0.0`): a component reaches a Redis server only if
//! its `allowed_outbound_hosts` grants it (`redis://host:port`, or a rule
//! whose scheme is `*`); anything else is `invalid-address` before any
//! connection is made, and the attempt is logged without the password.

use std::time::Duration;

use redis::AsyncCommands;

use crate::host::OutboundPolicy;

/// How long connecting, and any one command, may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Connections one instance may hold open at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Redis's default port.
const DEFAULT_PORT: u16 = 6379;

/// An open connection (a guest resource). Clones share the connection.
#[derive(Clone)]
pub struct Connection {
    conn: redis::aio::MultiplexedConnection,
}

/// Why a Redis operation failed, as both interface versions say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

/// An argument of `execute`.
pub enum Param {
    Int(i64),
    Binary(Vec<u8>),
}

/// One value of `execute`'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Status(String),
    Int(i64),
    Binary(Vec<u8>),
}

fn other(e: redis::RedisError) -> RedisError {
    if e.kind() == redis::ErrorKind::TypeError {
        RedisError::TypeError
    } else {
        RedisError::Other(e.to_string())
    }
}

/// Whether `policy` grants `address` (a `redis://` or `rediss://` URL).
fn granted(policy: &OutboundPolicy, address: &str) -> bool {
    let Ok(uri) = address.parse::<http::Uri>() else {
        return false;
    };
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "redis" && scheme != "rediss" {
        return false;
    }
    let Some(host) = uri.host() else {
        return false;
    };
    let port = uri.port_u16().unwrap_or(DEFAULT_PORT);
    policy
        .shared
        .rules
        .iter()
        .any(|r| r.allows(scheme, host, port))
}

/// Connects to `address` if the component is granted it.
pub async fn open(policy: &OutboundPolicy, address: &str) -> Result<Connection, RedisError> {
    let shown = crate::kv::redact_url(address);
    if !granted(policy, address) {
        if let Some(m) = &policy.shared.metrics {
            m.outbound(&shown, "denied");
        }
        tracing::warn!(
            component = %policy.shared.component,
            address = %shown,
            "outbound Redis denied: address not granted (allowed_outbound_hosts)"
        );
        return Err(RedisError::InvalidAddress);
    }
    let client = redis::Client::open(address).map_err(|_| RedisError::InvalidAddress)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(TIMEOUT)
        .set_response_timeout(TIMEOUT);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| {
            tracing::warn!(component = %policy.shared.component, address = %shown, error = %e, "outbound Redis connection failed");
            RedisError::Other(format!("cannot connect to {shown}: {e}"))
        })?;
    if let Some(m) = &policy.shared.metrics {
        m.outbound(&shown, "allowed");
    }
    Ok(Connection { conn })
}

impl Connection {
    fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.conn.clone()
    }
}

/// The operations, on a clone of the connection so no borrow of the
/// resource table is held across an await.
pub mod ops {
    use super::*;

    pub async fn publish(
        c: &Connection,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), RedisError> {
        c.conn()
            .publish::<_, _, ()>(channel, payload)
            .await
            .map_err(other)
    }

    pub async fn get(c: &Connection, key: String) -> Result<Option<Vec<u8>>, RedisError> {
        c.conn().get(key).await.map_err(other)
    }

    pub async fn set(c: &Connection, key: String, value: Vec<u8>) -> Result<(), RedisError> {
        c.conn().set::<_, _, ()>(key, value).await.map_err(other)
    }

    pub async fn incr(c: &Connection, key: String) -> Result<i64, RedisError> {
        c.conn().incr(key, 1).await.map_err(other)
    }

    pub async fn del(c: &Connection, keys: Vec<String>) -> Result<u32, RedisError> {
        c.conn().del(keys).await.map_err(other)
    }

    pub async fn sadd(c: &Connection, key: String, values: Vec<String>) -> Result<u32, RedisError> {
        c.conn().sadd(key, values).await.map_err(other)
    }

    pub async fn smembers(c: &Connection, key: String) -> Result<Vec<String>, RedisError> {
        c.conn().smembers(key).await.map_err(other)
    }

    pub async fn srem(c: &Connection, key: String, values: Vec<String>) -> Result<u32, RedisError> {
        c.conn().srem(key, values).await.map_err(other)
    }

    /// Any command; an array reply gives one value per element.
    pub async fn execute(
        c: &Connection,
        command: String,
        args: Vec<Param>,
    ) -> Result<Vec<Reply>, RedisError> {
        let mut cmd = redis::cmd(&command);
        for a in args {
            match a {
                Param::Int(i) => cmd.arg(i),
                Param::Binary(b) => cmd.arg(b),
            };
        }
        let v: redis::Value = cmd.query_async(&mut c.conn()).await.map_err(other)?;
        match v {
            redis::Value::Array(items) | redis::Value::Set(items) => {
                items.into_iter().map(reply).collect()
            }
            v => Ok(vec![reply(v)?]),
        }
    }

    fn reply(v: redis::Value) -> Result<Reply, RedisError> {
        Ok(match v {
            redis::Value::Nil => Reply::Nil,
            redis::Value::Int(i) => Reply::Int(i),
            redis::Value::BulkString(b) => Reply::Binary(b),
            redis::Value::SimpleString(s) => Reply::Status(s),
            redis::Value::Okay => Reply::Status("OK".into()),
            redis::Value::Boolean(b) => Reply::Int(i64::from(b)),
            redis::Value::Double(d) => Reply::Binary(d.to_string().into_bytes()),
            redis::Value::VerbatimString { text, .. } => Reply::Binary(text.into_bytes()),
            redis::Value::BigNumber(n) => Reply::Binary(n.to_string().into_bytes()),
            redis::Value::ServerError(e) => {
                return Err(RedisError::Other(format!("{e:?}")));
            }
            _ => return Err(RedisError::TypeError),
        })
    }
}
