//! Shared helpers for Crunch's integration tests: the golden reference vectors and the paths of
//! the artefacts (`crunch` binary, kernel components) that `just build` produces, and private
//! Redis servers.

pub mod golden;
pub mod paths;
pub mod redis_server;
