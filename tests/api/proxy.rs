//! A TCP proxy between Doorman and PostgreSQL that a test can cut and restore, to stage an outage
//! without stopping the shared database server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub address: SocketAddr,
    open: Arc<AtomicBool>,
    /// While set, forwarded connections stay open but carry no bytes, as in a network partition.
    frozen: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding connections on a free local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));

        let accept = tokio::spawn({
            let open = open.clone();
            let frozen = frozen.clone();
            let connections = connections.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        // Closing at once makes the client's connection attempt fail fast.
                        drop(client);
                        continue;
                    }
                    let frozen = frozen.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            let (client_read, client_write) = client.into_split();
                            let (server_read, server_write) = server.into_split();
                            tokio::join!(
                                pump(client_read, server_write, frozen.clone()),
                                pump(server_read, client_write, frozen)
                            );
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Self { address, open, frozen, connections, accept }
    }

    /// Closes every forwarded connection and refuses new ones until [`TcpProxy::restore`].
    /// Starts a proxy in front of the server of the PostgreSQL `url` and returns it with `url`
    /// pointed at the proxy.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let mut url: url::Url = url.parse().expect("a PostgreSQL URL");
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Self::start(tokio::net::lookup_host(upstream).await.unwrap().next().unwrap()).await;

        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.address.port())).unwrap();
        (proxy, url.to_string())
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Forwards new connections again, and bytes of frozen ones.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Keeps every connection open but stops carrying bytes until [`TcpProxy::restore`].
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to`, holding each chunk while `frozen` is set.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let count = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..count]).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
