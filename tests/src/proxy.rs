//! A UDP proxy for fault tests: it sits between clients and the relay and
//! drops, duplicates, delays and so reorders datagrams, and can move a
//! client to a new source port mid-session (a network change).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How badly the network behaves, per datagram and direction.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub drop: f64,
    pub duplicate: f64,
    /// Each datagram waits a random time up to this, so some overtake others.
    pub jitter: Duration,
}

impl Impairment {
    pub const NONE: Impairment = Impairment {
        drop: 0.0,
        duplicate: 0.0,
        jitter: Duration::ZERO,
    };
}

/// What the proxy did, for the test to report.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

/// One client's path: the socket the proxy uses towards the relay for it.
struct Path {
    upstream: Arc<UdpSocket>,
    task: JoinHandle<()>,
}

/// A running proxy; its tasks end when it is dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    paths: Arc<Mutex<HashMap<SocketAddr, Path>>>,
    listen: Arc<UdpSocket>,
    relay: SocketAddr,
    impairment: Impairment,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for (_, p) in self.paths.lock().unwrap().drain() {
            p.task.abort();
        }
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `relay`.
    pub async fn start(relay: SocketAddr, impairment: Impairment) -> Proxy {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("proxy socket"));
        let addr = listen.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let paths: Arc<Mutex<HashMap<SocketAddr, Path>>> = Arc::default();
        let task = {
            let (listen, paths, counters) = (listen.clone(), paths.clone(), counters.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, client)) = listen.recv_from(&mut buf).await else {
                        return;
                    };
                    let upstream = paths
                        .lock()
                        .unwrap()
                        .entry(client)
                        .or_insert_with(|| {
                            new_path(client, listen.clone(), relay, impairment, counters.clone())
                        })
                        .upstream
                        .clone();
                    send_impaired(upstream, relay, buf[..n].to_vec(), impairment, &counters);
                }
            })
        };
        Proxy {
            addr,
            counters,
            paths,
            listen,
            relay,
            impairment,
            task,
        }
    }

    /// Moves every client to a new source port towards the relay, as when a
    /// laptop changes networks: the relay sees the same connection arrive
    /// from a new address.
    pub fn move_clients(&self) {
        let mut map = self.paths.lock().unwrap();
        let clients: Vec<SocketAddr> = map.keys().copied().collect();
        for client in clients {
            let old = map.remove(&client).unwrap();
            old.task.abort();
            let path = new_path(
                client,
                self.listen.clone(),
                self.relay,
                self.impairment,
                self.counters.clone(),
            );
            map.insert(client, path);
        }
    }
}

fn new_path(
    client: SocketAddr,
    listen: Arc<UdpSocket>,
    relay: SocketAddr,
    impairment: Impairment,
    counters: Arc<Counters>,
) -> Path {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("upstream socket");
    std_socket.set_nonblocking(true).unwrap();
    let upstream = Arc::new(UdpSocket::from_std(std_socket).expect("tokio socket"));
    let task = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = upstream.recv_from(&mut buf).await else {
                    return;
                };
                if from == relay {
                    send_impaired(
                        listen.clone(),
                        client,
                        buf[..n].to_vec(),
                        impairment,
                        &counters,
                    );
                }
            }
        })
    };
    Path { upstream, task }
}

fn send_impaired(
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    datagram: Vec<u8>,
    imp: Impairment,
    counters: &Counters,
) {
    let mut rng = rand::thread_rng();
    if rng.gen_bool(imp.drop) {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let copies = if rng.gen_bool(imp.duplicate) {
        counters.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    counters.forwarded.fetch_add(1, Ordering::Relaxed);
    for _ in 0..copies {
        let delay = if imp.jitter.is_zero() {
            Duration::ZERO
        } else {
            imp.jitter.mul_f64(rng.gen::<f64>())
        };
        let (socket, datagram) = (socket.clone(), datagram.clone());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _ = socket.send_to(&datagram, to).await;
        });
    }
}
