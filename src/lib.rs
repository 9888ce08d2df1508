//! chinaport-proxy: lets business systems use a China E-Port customs UKey safely over HTTP.
//! The binary (`main.rs`) only wires these modules together.

pub mod auth;
pub mod cli;
pub mod config;
pub mod ct;
pub mod customs;
pub mod encoding;
pub mod http;
pub mod logging;
pub mod mask;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod shutdown;
pub mod sign;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod sync;
pub mod time;
pub mod transfer;
pub mod ukey;
pub mod webhook;
