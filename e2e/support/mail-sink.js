// An SMTP server on 127.0.0.1 that accepts every message and keeps it in memory, so tests can
// read the sign-in codes that Doorman mails.

import { simpleParser } from "mailparser";
import { SMTPServer } from "smtp-server";

const DEFAULT_WAIT_MS = 5_000;
const POLL_INTERVAL_MS = 50;
// How long close() lets open SMTP connections finish before it drops them.
const CLOSE_TIMEOUT_MS = 2_000;
// The sentence of the text/plain part that carries the code.
const CODE_PATTERN = /Your sign-in code is (\d+)/;

/**
 * A received message: the SMTP envelope, whether the connection used TLS, the raw bytes, and the
 * fields that mailparser's simpleParser found.
 */
class ReceivedMessage {
  constructor({ envelopeFrom, envelopeTo, secure, raw, parsed }) {
    this.envelopeFrom = envelopeFrom;
    /** Recipient addresses from RCPT TO, as the client sent them. */
    this.envelopeTo = envelopeTo;
    this.secure = secure;
    this.raw = raw;
    this.parsed = parsed;
  }

  get subject() {
    return this.parsed.subject;
  }

  get text() {
    return this.parsed.text;
  }

  get html() {
    return this.parsed.html;
  }

  /** The top-level media type, such as multipart/alternative. */
  get contentType() {
    return this.parsed.headers.get("content-type")?.value;
  }

  /** Returns the digits after "Your sign-in code is" in the text part, or undefined. */
  code() {
    return CODE_PATTERN.exec(this.text ?? "")?.[1];
  }
}

/**
 * Starts an SMTP server on 127.0.0.1 with a port the system picks. It offers neither STARTTLS nor
 * AUTH, so a client that upgrades only when offered, as Doorman does for smtp:// URLs, sends plain
 * text.
 *
 * The sink parses and stores a message before it replies to the DATA command. Doorman sends the
 * send-verification-otp response only after that reply, so the message is stored by the time the
 * HTTP response arrives.
 *
 * Returns `url` (smtp://127.0.0.1:PORT), `messages` (every ReceivedMessage, oldest first),
 * `messagesTo(email)`, `waitForMessage(email)`, `waitForCode(email)` and `stop()`.
 */
export async function startMailSink() {
  const messages = [];
  // Errors from parsing or the connection, reported by waitForMessage instead of being lost.
  const failures = [];

  const server = new SMTPServer({
    disabledCommands: ["STARTTLS", "AUTH"],
    authOptional: true,
    logger: false,
    closeTimeout: CLOSE_TIMEOUT_MS,
    async onData(stream, session, callback) {
      try {
        const chunks = [];
        for await (const chunk of stream) {
          chunks.push(chunk);
        }
        const raw = Buffer.concat(chunks);
        const parsed = await simpleParser(raw);
        messages.push(
          new ReceivedMessage({
            envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
            envelopeTo: session.envelope.rcptTo.map((recipient) => recipient.address),
            secure: session.secure,
            raw,
            parsed,
          }),
        );
        callback();
      } catch (error) {
        failures.push(error);
        callback(error);
      }
    },
  });
  server.on("error", (error) => failures.push(error));

  await new Promise((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.server.address();

  // Matches recipients case-insensitively, as Doorman lower-cases addresses before sending.
  function messagesTo(email) {
    const address = email.toLowerCase();
    return messages.filter((message) => message.envelopeTo.some((recipient) => recipient.toLowerCase() === address));
  }

  /** Waits up to `timeoutMs` for a message to `email` and returns the newest one. */
  async function waitForMessage(email, { timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const received = messagesTo(email);
      if (received.length > 0) {
        return received.at(-1);
      }
      if (Date.now() >= deadline) {
        const problems = failures.map((error) => error.message).join("; ") || "none";
        throw new Error(
          `No message to ${email} arrived within ${timeoutMs} ms ` +
            `(${messages.length} messages received in total; SMTP errors: ${problems}).`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  }

  /** Waits up to `timeoutMs` for a message to `email` and returns the code of the newest one. */
  async function waitForCode(email, options) {
    const message = await waitForMessage(email, options);
    const code = message.code();
    if (code === undefined) {
      throw new Error(`The newest message to ${email} has no "Your sign-in code is" line:\n${message.text}`);
    }
    return code;
  }

  function stop() {
    return new Promise((resolve) => server.close(resolve));
  }

  return { url: `smtp://127.0.0.1:${port}`, messages, messagesTo, waitForMessage, waitForCode, stop };
}
