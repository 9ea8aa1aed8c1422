//! What the binaries set up for their process: [`settings`] read from the environment (the
//! library reads none), the log filter ([`logging`]), the allocator ([`memory`]).

pub mod logging;
pub mod memory;
pub mod settings;
