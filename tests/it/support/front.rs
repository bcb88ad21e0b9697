//! A front door for gateways: one fixed loopback URL that forwards each TCP connection to
//! the gateway it points at now, as a load balancer in front of gateways does.  A CLI
//! keeps its one URL while the gateway behind it is killed, restarted on another port, or
//! replaced by another gateway on the same database.
//!
//! While it points at no one (or at a gateway that is down), a connection is accepted
//! and closed at once.  [`Front::switch`] cuts the connections open at that moment, as a
//! balancer does when it drops a backend.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Front {
    /// `http://127.0.0.1:PORT`: what the CLI is given.
    pub url: String,
    target: Arc<Mutex<Option<String>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Front {
    /// A front door to the gateway at `url` (`http://127.0.0.1:PORT`).
    pub fn to(url: &str) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let front = Front {
            url: format!("http://{}", listener.local_addr().unwrap()),
            target: Arc::new(Mutex::new(Some(address(url)))),
            open: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (target, open, stop) = (front.target.clone(), front.open.clone(), front.stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let to = target.lock().unwrap().clone();
                let Some(backend) = to.and_then(|a| TcpStream::connect(a).ok()) else {
                    let _ = client.shutdown(Shutdown::Both); // no one behind the door
                    continue;
                };
                let mut held = open.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(backend.try_clone().unwrap());
                drop(held);
                pipe(client.try_clone().unwrap(), backend.try_clone().unwrap());
                pipe(backend, client);
            }
        });
        front
    }

    /// Points the door at another gateway (None: at no one), cutting every connection
    /// open now.
    pub fn switch(&self, to: Option<&str>) {
        *self.target.lock().unwrap() = to.map(address);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.switch(None);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://")); // wakes accept
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Copies `from` to `to` on a thread of its own until either side closes, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
