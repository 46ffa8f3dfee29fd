//! The wasmops host.
//!
//! One [`Runtime`] per process owns the wasmtime [`wasmtime::Engine`] (tuned
//! once, see [`engine`]), the on-disk compiled-artifact cache ([`cache`]) and
//! the epoch ticker that enforces deadlines. Components are loaded with
//! [`Runtime::load`], then run as commands ([`command`]) or served as
//! `wasi:http` handlers ([`http`]). Every capability a guest gets comes from a
//! [`Grants`] value: nothing is granted by default.

pub mod budget;
pub mod cache;
pub mod command;
pub mod engine;
pub mod grants;
pub mod guest_log;
pub mod host;
pub mod http;
pub mod kv;
pub mod kv_draft2;
pub mod limits;
pub mod load;
pub mod outbound;
pub mod preview1;
pub mod redis_out;
pub mod spin;
pub mod sqlite;
pub mod standin;
pub mod world;

pub use engine::{EngineSettings, PoolingChoice, Runtime};
pub use grants::{DirGrant, Grants, NetGrant, OutboundRule};
pub use limits::Limits;
pub use load::{LoadError, Loaded};
