//! Shared helpers for Crunch's integration tests: the golden reference vectors and the paths of
//! the artefacts (`crunch` binary, kernel components) that `just build` produces, and private
//! Redis servers (with a fault-injecting proxy), and the Lambda emulator with the bootstrap.

pub mod cli;
pub mod fault_proxy;
pub mod golden;
pub mod lambda_env;
pub mod paths;
pub mod redis_server;
