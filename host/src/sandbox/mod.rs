//! The sandbox layer: one wasmtime [`Engine`](engine::Engine) per process, kernel packs
//! compiled and pre-instantiated once ([`pack`]) and cached by digest ([`cache`]), and each
//! batch run in a fresh, limited instance ([`batch`]).

pub mod batch;
pub mod cache;
pub mod engine;
pub mod pack;
