//! One module per command group: parse arguments into library options, make
//! one library call, format the result.

pub mod authz;
pub mod aws;
pub mod bootstrap;
pub mod ca;
pub mod cert;
pub mod cli;
pub mod code;
pub mod drill;
pub mod enforce;
pub mod gate;
pub mod ipset;
pub mod logs;
pub mod plan;
pub mod policy;
pub mod rules;
pub mod scan;
pub mod serve;
pub mod store;
pub mod sync;
