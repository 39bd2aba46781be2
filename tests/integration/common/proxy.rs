//! A TCP proxy on 127.0.0.1 in front of one upstream port, for fault tests: it cuts
//! every open connection on request and can refuse new ones for a while.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Open connections: (id, client side, upstream side).
type Live = Arc<Mutex<Vec<(u64, TcpStream, TcpStream)>>>;

/// A TCP proxy on 127.0.0.1 in front of one upstream port, whose connections the test
/// can cut (both sockets shut down, as a dropped network path or a restarted load
/// balancer would), and which can refuse connections for a while (its listening socket
/// closed, so a client's connect fails with "connection refused", then opened again on
/// the same port). Dropping it stops it and waits for its threads.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Set by [`Proxy::refuse`]; the acceptor closes or reopens its socket to match.
    refusing: Arc<AtomicBool>,
    /// Whether the listening socket is closed now.
    closed: Arc<AtomicBool>,
    /// Connections accepted and passed upstream so far.
    accepted: Arc<AtomicU64>,
    live: Live,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free port in front of `127.0.0.1:<upstream>`. Nothing needs to listen
    /// there yet: a connection that cannot reach the upstream is closed.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let refusing = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let live: Live = Arc::default();
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (stop, refusing, closed, accepted, live, threads) = (
                stop.clone(),
                refusing.clone(),
                closed.clone(),
                accepted.clone(),
                live.clone(),
                threads.clone(),
            );
            std::thread::spawn(move || {
                let mut listener = Some(listener);
                let mut next = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if refusing.load(Ordering::SeqCst) {
                        // Closing the socket also resets what waits in its backlog.
                        listener = None;
                        closed.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    let Some(open) = listener.as_ref() else {
                        // std sets SO_REUSEADDR, so the same port binds again at once.
                        match TcpListener::bind(addr) {
                            Ok(l) => {
                                l.set_nonblocking(true).unwrap();
                                listener = Some(l);
                                closed.store(false, Ordering::SeqCst);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                        continue;
                    };
                    let client = match open.accept() {
                        Ok((client, _)) => client,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let id = next;
                    next += 1;
                    accepted.fetch_add(1, Ordering::SeqCst);
                    live.lock().unwrap().push((
                        id,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    ));
                    let mut pumps = threads.lock().unwrap();
                    // Threads of connections that ended are joined here, so a long run
                    // with many reconnects does not pile them up.
                    let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *pumps)
                        .into_iter()
                        .partition(|t| t.is_finished());
                    *pumps = running;
                    for t in done {
                        let _ = t.join();
                    }
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server.try_clone().unwrap(), client.try_clone().unwrap()),
                    ] {
                        let live = live.clone();
                        pumps.push(std::thread::spawn(move || {
                            pump(from, to);
                            live.lock().unwrap().retain(|(i, ..)| *i != id);
                        }));
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            refusing,
            closed,
            accepted,
            live,
            threads,
            acceptor: Some(acceptor),
        }
    }

    /// Cuts every open connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let open = std::mem::take(&mut *self.live.lock().unwrap());
        for (_, client, server) in &open {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        open.len()
    }

    /// Starts (`true`) or ends (`false`) refusing connections; returns once the listening
    /// socket is closed, or open again (at most 5 s).
    pub fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::SeqCst);
        let started = Instant::now();
        while self.closed.load(Ordering::SeqCst) != refuse {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy on {} did not {} its socket within 5 s",
                self.addr,
                if refuse { "close" } else { "reopen" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The connections open now.
    pub fn open(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// The connections accepted (and passed upstream) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either side ends, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
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
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}
