//! A TCP proxy in front of a real Redis that injects one fault on request: the reply to a
//! command carrying a marker is lost (the connection drops after Redis ran it), or something
//! happens just before such a command reaches Redis (a race, made certain).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use anyhow::{Context, Result};

type Hook = Box<dyn FnOnce() + Send>;

/// The fault to inject, armed until the marker is seen once.
enum Fault {
    /// Forward the command, then drop the client's connection instead of the reply.
    LoseReply(Vec<u8>),
    /// Run the hook, then forward the command.
    Before(Vec<u8>, Hook),
}

/// A proxy on a free loopback port, forwarding to `127.0.0.1:upstream`.
pub struct FaultProxy {
    port: u16,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl FaultProxy {
    /// Starts forwarding to the Redis on `upstream`.
    pub fn start(upstream: u16) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let fault = Arc::new(Mutex::new(None));
        let armed = Arc::clone(&fault);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let armed = Arc::clone(&armed);
                thread::spawn(move || relay(client, server, armed));
            }
        });
        Ok(Self { port, fault })
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the reply to the next command whose bytes contain `marker`.
    pub fn lose_reply_to(&self, marker: &[u8]) {
        self.arm(Fault::LoseReply(marker.to_vec()));
    }

    /// Runs `hook` just before the next command whose bytes contain `marker` reaches Redis.
    pub fn before(&self, marker: &[u8], hook: impl FnOnce() + Send + 'static) {
        self.arm(Fault::Before(marker.to_vec(), Box::new(hook)));
    }

    /// Whether the armed fault has fired.
    pub fn fired(&self) -> bool {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn arm(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }
}

/// Forwards one client connection, applying the armed fault to the first command that
/// matches it.
fn relay(mut client: TcpStream, server: TcpStream, fault: Arc<Mutex<Option<Fault>>>) {
    let (Ok(mut to_server), Ok(mut from_server), Ok(mut to_client)) =
        (server.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    // Replies flow back on their own thread, unless a reply is to be lost.
    let lose_next_reply = Arc::new(Mutex::new(false));
    let lose = Arc::clone(&lose_next_reply);
    let client_side = client.try_clone();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = from_server.read(&mut buf) {
            if n == 0 {
                break;
            }
            if std::mem::take(&mut *lose.lock().unwrap_or_else(PoisonError::into_inner)) {
                if let Ok(c) = &client_side {
                    let _ = c.shutdown(Shutdown::Both);
                }
                let _ = from_server.shutdown(Shutdown::Both);
                return;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut buf = [0u8; 65536];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut armed = fault.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = match armed.as_ref() {
            Some(Fault::LoseReply(m) | Fault::Before(m, _)) => contains(chunk, m),
            None => false,
        };
        if hit {
            match armed.take() {
                Some(Fault::LoseReply(_)) => {
                    *lose_next_reply
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = true;
                }
                Some(Fault::Before(_, hook)) => hook(),
                None => {}
            }
        }
        drop(armed);
        if to_server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
