// Starts a Doorman server process for a test file and stops it again.

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { startMailSink } from "./mail-sink.js";

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DEFAULT_BINARY = path.resolve(E2E_DIR, "../target/debug/doorman");

/** The browser origin that every test server trusts. */
export const TRUSTED_ORIGIN = "http://localhost:5173";

/** Base path of the Better Auth routes. */
export const BASE_PATH = "/api/auth";

/** The sender that every test server puts on its mail. */
export const MAIL_FROM = "Doorman <auth@example.com>";

const STARTUP_TIMEOUT_MS = 30_000;
const HEALTH_POLL_INTERVAL_MS = 100;
const STOP_TIMEOUT_MS = 15_000;
const LOG_TAIL_LINES = 40;
const CLI_TIMEOUT_MS = 30_000;

// Servers still running, so a test process that exits early does not leave them behind.
const running = new Set();
process.on("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

async function resolveBinary() {
  const binary = process.env.DOORMAN_BIN ?? DEFAULT_BINARY;
  try {
    await access(binary, fsConstants.X_OK);
  } catch {
    throw new Error(
      `Doorman binary not found or not executable at ${binary}. ` +
        "Run `cargo build` in the repository root, or set DOORMAN_BIN to the binary's path.",
    );
  }
  return binary;
}

// Copies the environment without any DOORMAN_* variable, so the caller's shell cannot change the
// configuration under test. Mail goes to the sink at `smtpURL`, and `overrides` comes last.
function serverEnvironment(dataDir, smtpURL, overrides) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("DOORMAN_")) {
      env[name] = value;
    }
  }
  return {
    ...env,
    DOORMAN_SECRET: randomBytes(32).toString("hex"),
    DOORMAN_ANONYMOUS__ENABLED: "true",
    DOORMAN_DATABASE__URL: `sqlite://${path.join(dataDir, "doorman.db")}`,
    DOORMAN_SERVER__LISTEN: "127.0.0.1:0",
    DOORMAN_SERVER__TRUSTED_ORIGINS: TRUSTED_ORIGIN,
    DOORMAN_MAIL__TRANSPORT: "smtp",
    DOORMAN_MAIL__SMTP_URL: smtpURL,
    DOORMAN_MAIL__FROM: MAIL_FROM,
    // Every request of the suite comes from 127.0.0.1, so the per-address budgets of sign-in,
    // guest creation and session reads are raised; the code limits keep their defaults, because
    // tests check them.
    DOORMAN_RATE_LIMIT__RULES__SIGN_IN__MAX: "10000",
    DOORMAN_RATE_LIMIT__RULES__SIGN_IN__WINDOW: "60s",
    DOORMAN_RATE_LIMIT__RULES__GUEST_CREATE__MAX: "10000",
    DOORMAN_RATE_LIMIT__RULES__GUEST_CREATE__WINDOW: "1h",
    DOORMAN_RATE_LIMIT__RULES__SESSION_READ__MAX: "10000",
    DOORMAN_RATE_LIMIT__RULES__SESSION_READ__WINDOW: "60s",
    ...overrides,
  };
}

// Returns the `address` field of a JSON log line with the message "listening", else undefined.
// tracing-subscriber's JSON format nests the message and fields under "fields".
function listeningAddress(line) {
  let entry;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  const fields = entry?.fields ?? entry;
  if (fields?.message === "listening" && typeof fields.address === "string") {
    return fields.address;
  }
  return undefined;
}

function waitForListening(child, lines, logTail) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      finish(new Error(`Timed out after ${STARTUP_TIMEOUT_MS} ms waiting for Doorman to log "listening".\n${logTail()}`));
    }, STARTUP_TIMEOUT_MS);

    const onLine = (line) => {
      const address = listeningAddress(line);
      if (address !== undefined) {
        finish(null, address);
      }
    };
    const onExit = (code, signal) => {
      finish(new Error(`Doorman exited during startup (code ${code}, signal ${signal}).\n${logTail()}`));
    };
    const onError = (error) => {
      finish(new Error(`Doorman failed to start: ${error.message}`));
    };

    function finish(error, address) {
      clearTimeout(timer);
      lines.off("line", onLine);
      child.off("exit", onExit);
      child.off("error", onError);
      if (error) {
        reject(error);
      } else {
        resolve(address);
      }
    }

    lines.on("line", onLine);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

async function waitForHealth(origin, child, logTail) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let lastProblem = "no request sent";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`Doorman exited before /health returned 200 (code ${child.exitCode}).\n${logTail()}`);
    }
    try {
      const response = await fetch(`${origin}/health`);
      await response.arrayBuffer();
      if (response.status === 200) {
        return;
      }
      lastProblem = `status ${response.status}`;
    } catch (error) {
      lastProblem = error.message;
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_INTERVAL_MS));
  }
  throw new Error(
    `Timed out after ${STARTUP_TIMEOUT_MS} ms waiting for GET ${origin}/health to return 200 (last result: ${lastProblem}).\n${logTail()}`,
  );
}

function waitForExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// Runs the binary with `args` to completion and returns its exit code, stdout and stderr. A
// non-zero exit is a result, not an error.
function runBinary(binary, args, options) {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { ...options, timeout: CLI_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") {
        reject(new Error(`Running doorman ${args.join(" ")} failed: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: error ? error.code : 0, stdout, stderr });
    });
  });
}

/**
 * Starts an SMTP sink and `doorman serve` on free loopback ports, with a fresh SQLite database in
 * a new temporary directory, and waits until the server logs "listening" and GET /health
 * returns 200.
 *
 * `options.env` adds or replaces DOORMAN_* variables of the server and of `cli`, for example
 * `{ DOORMAN_EMAIL_OTP__EXPIRES_IN: "1s" }`.
 *
 * Returns:
 * - `origin` (such as http://127.0.0.1:41235) and `baseURL` (origin plus /api/auth);
 * - `mail`, the sink that receives the server's mail (see mail-sink.js);
 * - `cli(...args)`, which runs `doorman ARGS` with the server's configuration, so it opens the
 *   same database, and resolves to `{code, stdout, stderr}`;
 * - `showUser(id)`, the same for `doorman users show ID`;
 * - `stop()`, which sends SIGTERM, waits for the process to exit, stops the sink, removes the
 *   temporary directory, and throws when the exit was not a clean exit with code 0.
 */
export async function startDoorman(options = {}) {
  const binary = await resolveBinary();
  const dataDir = await mkdtemp(path.join(tmpdir(), "doorman-e2e-"));
  let mail;
  try {
    mail = await startMailSink();
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const env = serverEnvironment(dataDir, mail.url, options.env ?? {});

  // The working directory is the empty temporary directory, so no doorman.toml is picked up.
  const child = spawn(binary, ["--log-format", "json", "serve"], {
    cwd: dataDir,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));

  const logLines = [];
  const lines = createInterface({ input: child.stderr });
  lines.on("line", (line) => {
    logLines.push(line);
    if (logLines.length > LOG_TAIL_LINES) {
      logLines.shift();
    }
  });
  const logTail = () => `Last lines of the Doorman log:\n${logLines.join("\n")}`;

  async function stop() {
    let exitedInTime = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      exitedInTime = await waitForExit(child, STOP_TIMEOUT_MS);
      if (!exitedInTime) {
        child.kill("SIGKILL");
        await waitForExit(child, STOP_TIMEOUT_MS);
      }
    }
    await mail.stop();
    await rm(dataDir, { recursive: true, force: true });

    if (!exitedInTime) {
      throw new Error(`Doorman did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM and was killed.\n${logTail()}`);
    }
    if (child.exitCode !== 0) {
      throw new Error(
        `Doorman exited with code ${child.exitCode} (signal ${child.signalCode}) after SIGTERM.\n${logTail()}`,
      );
    }
  }

  try {
    const address = await waitForListening(child, lines, logTail);
    const origin = `http://${address}`;
    await waitForHealth(origin, child, logTail);
    const cli = (...args) => runBinary(binary, args, { cwd: dataDir, env });
    const showUser = (id) => cli("users", "show", id);
    return { origin, baseURL: `${origin}${BASE_PATH}`, mail, cli, showUser, stop };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}
