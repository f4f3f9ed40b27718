//! The single SQLite writer: one connection, fed by a queue, committing queued jobs together.
//!
//! SQLite allows one writer at a time, and with `synchronous = FULL` every commit waits for the
//! disk. The writer takes every job waiting in the queue, runs each inside its own savepoint of one
//! `BEGIN IMMEDIATE` transaction, and commits them with a single sync. A failing job rolls back to
//! its savepoint alone; a failing commit fails every job of the batch.

use std::any::Any;

use anyhow::anyhow;
use futures_util::future::BoxFuture;
use sqlx::{Connection, Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::map_error;
use crate::store::StoreError;

/// Most jobs committed together; bounds the latency one batch adds to its first job.
const MAX_BATCH: usize = 256;
/// Jobs that may wait for the writer before callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4096;

type JobOutput = Result<Box<dyn Any + Send>, StoreError>;
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, JobOutput> + Send>;

struct Request {
    job: Job,
    reply: oneshot::Sender<JobOutput>,
}

enum Message {
    /// A job for the next grouped transaction.
    Grouped(Request),
    /// A job that manages its own transactions (migrations), run alone between batches.
    Alone(Request),
    /// Finish what came before, close the connection and stop.
    Close(oneshot::Sender<()>),
}

/// A handle to the writer task; cloning it shares the one queue.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the writer task on `connection`.
    pub fn spawn(connection: SqliteConnection) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(connection, receiver));
        Self { queue }
    }

    /// Runs `job` in the next write transaction and returns its output once that transaction is
    /// committed.
    pub async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.submit(job, Message::Grouped).await
    }

    /// Runs `job` alone, outside any transaction of the writer's, for work that opens its own.
    pub async fn write_alone<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.submit(job, Message::Alone).await
    }

    /// Lets every job queued so far finish, then closes the connection. Later writes fail as
    /// unavailable.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    async fn submit<T, F>(&self, job: F, wrap: fn(Request) -> Message) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let (reply, receiver) = oneshot::channel();
        let job = erase(move |connection| {
            Box::pin(async move { job(connection).await.map(|value| Box::new(value) as Box<dyn Any + Send>) })
        });

        self.queue
            .send(wrap(Request { job, reply }))
            .await
            .map_err(|_| StoreError::Unavailable(anyhow!("the SQLite writer has stopped")))?;
        let output = receiver
            .await
            .map_err(|_| StoreError::Unavailable(anyhow!("the SQLite writer stopped before replying")))??;

        let value = output.downcast::<T>().expect("a job's output has the type its caller expects");
        Ok(*value)
    }
}

/// Gives a closure the higher-ranked signature that a boxed job needs.
fn erase<F>(job: F) -> Job
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, JobOutput> + Send + 'static,
{
    Box::new(job)
}

async fn run(mut connection: SqliteConnection, mut receiver: mpsc::Receiver<Message>) {
    let mut next = receiver.recv().await;
    let closed = loop {
        let mut batch = Vec::new();
        let after_batch = loop {
            match next.take() {
                Some(Message::Grouped(request)) => batch.push(request),
                other => break other,
            }
            if batch.len() == MAX_BATCH {
                break None;
            }
            match receiver.try_recv() {
                Ok(message) => next = Some(message),
                Err(_) => break None,
            }
        };
        if !batch.is_empty() {
            run_batch(&mut connection, batch).await;
        }

        match after_batch {
            Some(Message::Alone(request)) => {
                let output = (request.job)(&mut connection).await;
                let _ = request.reply.send(output);
            }
            Some(Message::Close(done)) => break Some(done),
            Some(Message::Grouped(_)) => unreachable!("grouped jobs join the batch"),
            None => {}
        }
        next = match receiver.recv().await {
            Some(message) => Some(message),
            None => break None,
        };
    };

    receiver.close();
    if let Err(error) = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
        tracing::warn!(error = %error, "checkpointing the SQLite WAL at close failed");
    }
    if let Err(error) = connection.close().await {
        tracing::warn!(error = %error, "closing the SQLite writer connection failed");
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

async fn run_batch(connection: &mut SqliteConnection, batch: Vec<Request>) {
    let size = batch.len();
    if let Err(error) = connection.execute("BEGIN IMMEDIATE").await {
        fail_all(batch.into_iter().map(|request| request.reply), &map_error(error));
        return;
    }

    let mut replies = Vec::with_capacity(size);
    for request in batch {
        match run_job(connection, request.job).await {
            Ok(output) => replies.push((request.reply, output)),
            Err(error) => {
                // The savepoint machinery itself failed, so the transaction is in an unknown state.
                let _ = connection.execute("ROLLBACK").await;
                let mut pending: Vec<_> = replies.into_iter().map(|(reply, _)| reply).collect();
                pending.push(request.reply);
                fail_all(pending.into_iter(), &error);
                return;
            }
        }
    }

    if let Err(error) = connection.execute("COMMIT").await {
        let _ = connection.execute("ROLLBACK").await;
        fail_all(replies.into_iter().map(|(reply, _)| reply), &map_error(error));
        return;
    }

    tracing::trace!(jobs = size, "SQLite write batch committed");
    for (reply, output) in replies {
        let _ = reply.send(output);
    }
}

/// Runs one job inside a savepoint. The outer error means the savepoint statements failed; the
/// inner result is the job's own.
async fn run_job(connection: &mut SqliteConnection, job: Job) -> Result<JobOutput, StoreError> {
    connection.execute("SAVEPOINT job").await.map_err(map_error)?;
    let output = job(connection).await;
    if output.is_err() {
        connection.execute("ROLLBACK TO job").await.map_err(map_error)?;
    }
    connection.execute("RELEASE job").await.map_err(map_error)?;
    Ok(output)
}

fn fail_all(replies: impl Iterator<Item = oneshot::Sender<JobOutput>>, error: &StoreError) {
    for reply in replies {
        let copy = match error {
            StoreError::Unavailable(source) => StoreError::Unavailable(anyhow!("{source:#}")),
            StoreError::Conflict(message) => StoreError::Conflict(message.clone()),
            StoreError::Other(source) => StoreError::Other(anyhow!("{source:#}")),
        };
        let _ = reply.send(Err(copy));
    }
}
