//! A minimal SMTP server for the tests: it accepts every message over a real socket and keeps it,
//! or rejects every message when told to fail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A received message: its recipients and its raw DATA.
#[derive(Debug, Clone)]
pub struct Received {
    pub recipients: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub address: SocketAddr,
    messages: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let sink = Self { address, messages: Arc::default(), failing: Arc::default() };
        let server = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.session(stream).await;
                });
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Rejects every later message with a permanent error.
    pub fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages to `email` so far.
    pub fn messages_to(&self, email: &str) -> Vec<Received> {
        self.messages().into_iter().filter(|message| message.recipients.iter().any(|to| to == email)).collect()
    }

    /// Waits up to five seconds for a message to `email` beyond the first `seen`, and returns the
    /// code in its text part.
    pub async fn code_after(&self, email: &str, seen: usize) -> String {
        for _ in 0..100 {
            if let Some(message) = self.messages_to(email).get(seen) {
                return extract_code(&message.data);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no message {seen} to {email} arrived");
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let mut recipients = Vec::new();

        while let Some(line) = lines.next_line().await? {
            let command = line.to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
                b"250 sink\r\n"
            } else if command.starts_with("MAIL FROM") {
                recipients.clear();
                b"250 OK\r\n"
            } else if command.starts_with("RCPT TO") {
                let address = line[8..].trim().trim_start_matches(':').trim().trim_matches(['<', '>']).to_string();
                recipients.push(address);
                b"250 OK\r\n"
            } else if command == "DATA" {
                write.write_all(b"354 end with .\r\n").await?;
                let mut data = String::new();
                while let Some(line) = lines.next_line().await? {
                    if line == "." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                if self.failing.load(Ordering::SeqCst) {
                    b"554 rejected by the test sink\r\n"
                } else {
                    self.messages.lock().unwrap().push(Received { recipients: recipients.clone(), data });
                    b"250 OK queued\r\n"
                }
            } else if command == "QUIT" {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"250 OK\r\n"
            };
            write.write_all(reply).await?;
        }
        Ok(())
    }
}

/// The digits after "Your sign-in code is" in a message.
pub fn extract_code(data: &str) -> String {
    let start = data.find("Your sign-in code is ").expect("the message names a code") + "Your sign-in code is ".len();
    data[start..].chars().take_while(char::is_ascii_digit).collect()
}
