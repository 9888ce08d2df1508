//! chinaport-proxy: lets business systems use a China E-Port customs UKey safely over HTTP.
//! The binary (`main.rs`) only wires these modules together.

pub mod auth;
pub mod c14n;
pub mod ceb;
pub mod cli;
pub mod config;
pub mod customs179;
pub mod customs_api;
pub mod logging;
pub mod mask;
pub mod reply;
pub mod rpc;
pub mod server;
pub mod shutdown;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod ukey;
pub mod webhook;
