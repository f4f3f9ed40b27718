//! The accept loop: a connection cap, a header-read timeout and graceful shutdown, which
//! `axum::serve` alone does not offer together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Pause after a failed `accept` (such as too many open files) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits of the accept loop, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Maximum time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Maximum connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Maximum time shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to `shutdown_timeout`) and returns.
pub async fn serve(listener: TcpListener, router: Router, options: ServeOptions, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };

        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(error = %error, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    info!("no longer accepting connections; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_timeout) => {
            warn!(timeout_seconds = options.shutdown_timeout.as_secs(), "connections still open at the shutdown timeout were cut");
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers at once, and returns a future that resolves when
/// either signal arrives. Installing before the server announces itself means a signal sent right
/// after start-up still shuts down gracefully instead of killing the process.
///
/// # Errors
/// The handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received; shutting down"),
            _ = terminate.recv() => info!("SIGTERM received; shutting down"),
        }
    })
}
