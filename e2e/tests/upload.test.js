// Uploads through PUT /powersync/upload, sent the way a PowerSync app's backend connector sends
// them. The client's queued writes are built with the CrudEntry and CrudBatch classes of
// @powersync/common (version pinned in package.json), as getCrudBatch() builds them from the rows
// of its local ps_crud table, and the connector sends `entry.toJSON()` of each entry. Doorman writes
// them to a fresh schema on a real PostgreSQL server, and the test reads the rows back with `pg`.

import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

// NOTE: @powersync/common stays on 1.x. Version 2.3.0 exports CrudEntry only as a TypeScript
// interface, and its class, with the same fromRow and toJSON, is in @powersync/shared-internals,
// which is not public API.
import { CrudBatch, CrudEntry, UpdateType } from "@powersync/common";
import pg from "pg";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";
import { signInGuest, signInUser, uniqueDeviceId } from "../support/users.js";

// The PowerSync service URL that Doorman returns as the credentials' endpoint. No request goes to it.
const POWERSYNC_URL = "https://sync.example.com";
// The sync routes are mounted at the root under `sync.base_path`, not under /api/auth.
const SYNC_BASE_PATH = "/powersync";
const DEFAULT_SYNC_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test";
const TABLE = "todos";
// The columns that `sync.tables.todos.columns` lists. `user_id` is the owner column, and `plan`
// is server-owned, so clients never write either.
const WRITABLE_COLUMNS = ["description", "completed", "due_at", "meta"];
// An owner id that a client puts in its row data. Doorman must write the caller's id instead.
const FORGED_OWNER = "forged-owner";

// The synced table, with a server-owned `plan` column whose default no upload may change.
const CREATE_TABLE_SQL = (schema) => `
  CREATE TABLE ${schema}.${TABLE} (
    id text PRIMARY KEY,
    user_id text,
    description text,
    completed boolean NOT NULL DEFAULT false,
    due_at timestamptz,
    meta jsonb,
    plan text NOT NULL DEFAULT 'free'
  )`;

function syncDatabaseURL() {
  return process.env.DOORMAN_TEST_SYNC_DATABASE_URL || DEFAULT_SYNC_DATABASE_URL;
}

// Returns `url` without its password, for error messages.
function redactedURL(url) {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") {
      parsed.password = "***";
    }
    return parsed.toString();
  } catch {
    return "(an invalid URL)";
  }
}

// Returns the headers that present the holder's session from `deviceId` in a plain fetch. Cookie
// requests also carry the trusted Origin, as a browser app on that origin sends it.
function deviceHeaders(holder, deviceId) {
  const credentials = holder.credentialHeaders();
  assert.ok(Object.keys(credentials).length > 0, `the ${holder.mode} client holds no session`);
  const headers = { ...credentials, "x-device-id": deviceId };
  return holder.mode === "cookie" ? { ...headers, origin: TRUSTED_ORIGIN } : headers;
}

// Requests a sync token, as a connector's fetchCredentials does, which also registers the device.
// Returns the PowerSyncCredentials fields `endpoint` and `token`.
async function fetchCredentials(doorman, headers) {
  const response = await fetch(`${doorman.origin}${SYNC_BASE_PATH}/token`, { headers });
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${SYNC_BASE_PATH}/token returned ${response.status}: ${text}`);
  const body = JSON.parse(text);
  assert.equal(typeof body.token, "string");
  return { endpoint: body.powerSyncUrl, token: body.token };
}

// Sends PUT /powersync/upload with the JSON `body` and returns the status, raw text and parsed body.
async function sendUpload(doorman, headers, body) {
  const response = await fetch(`${doorman.origin}${SYNC_BASE_PATH}/upload`, {
    method: "PUT",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    assert.fail(`PUT ${SYNC_BASE_PATH}/upload returned ${response.status} with a body that is not JSON: ${text}`);
  }
  return { status: response.status, text, body: parsed };
}

// Sends the toJSON() of every entry of `batch`, as a connector's uploadData does with the batch
// from getCrudBatch(), and calls batch.complete() only after a 200. A real connector throws on any
// other status, and the PowerSync client then keeps the batch and retries it after a delay.
async function uploadData(doorman, headers, batch) {
  const response = await sendUpload(doorman, headers, { operations: batch.crud.map((entry) => entry.toJSON()) });
  if (response.status === 200) {
    await batch.complete();
  }
  return response;
}

/**
 * A PowerSync client's local upload queue. Each local write becomes a row `{id, tx_id, data}` of
 * the client's ps_crud table, where `data` is the JSON text of `{op, type, id, data}`, and
 * getCrudBatch() turns the rows into CrudEntry objects with CrudEntry.fromRow. Row data contains
 * values as SQLite stores them: booleans as 0 or 1, JSON and timestamps as text.
 */
class LocalUploadQueue {
  #rows = [];
  #nextClientId = 1;
  #nextTransactionId = 1;
  #completedCount = 0;

  /** Queues `writes` (each `{op, type, id, data?}`) as one local transaction. */
  transaction(...writes) {
    const transactionId = this.#nextTransactionId++;
    for (const write of writes) {
      this.#rows.push({ id: this.#nextClientId++, tx_id: transactionId, data: JSON.stringify(write) });
    }
  }

  /** Returns every queued write as one CrudBatch, as getCrudBatch() does below its limit. */
  crudBatch() {
    const entries = this.#rows.map((row) => CrudEntry.fromRow(row));
    return new CrudBatch(entries, false, async () => {
      this.#completedCount += 1;
      this.#rows = [];
    });
  }

  /** Number of batches completed so far. */
  get completedCount() {
    return this.#completedCount;
  }

  /** Number of writes still queued. */
  get size() {
    return this.#rows.length;
  }
}

function putWrite(id, data) {
  return { op: UpdateType.PUT, type: TABLE, id, data };
}

function patchWrite(id, data) {
  return { op: UpdateType.PATCH, type: TABLE, id, data };
}

function deleteWrite(id) {
  return { op: UpdateType.DELETE, type: TABLE, id };
}

// Builds a todos row as readTodos returns it: the column defaults, then `fields`.
function todoRow(id, owner, fields) {
  return {
    id,
    user_id: owner,
    description: null,
    completed: false,
    due_at: null,
    meta: null,
    plan: "free",
    ...fields,
  };
}

describe("uploads to a synced PostgreSQL schema", () => {
  const databaseURL = syncDatabaseURL();
  const schema = `e2e_${randomBytes(8).toString("hex")}`;
  let database;
  let schemaCreated = false;
  let doorman;

  // Reads the todos rows with the given ids, ordered by description. pg returns booleans as
  // booleans, timestamptz as Date and jsonb as the parsed value.
  async function readTodos(ids) {
    const { rows } = await database.query(
      `SELECT id, user_id, description, completed, due_at, meta, plan FROM ${schema}.${TABLE}
       WHERE id = ANY($1::text[]) ORDER BY description`,
      [ids],
    );
    return rows;
  }

  async function countTodosOwnedBy(userId) {
    const { rows } = await database.query(`SELECT count(*)::int AS count FROM ${schema}.${TABLE} WHERE user_id = $1`, [userId]);
    return rows[0].count;
  }

  // Reads the stored rejections of `userId`, without `id`, `created_at` and `message`, after
  // checking that each has a non-empty message.
  async function readRejections(userId) {
    const { rows } = await database.query(
      `SELECT user_id, device_id, op, type, row_id, code, message FROM ${schema}.upload_rejections
       WHERE user_id = $1 ORDER BY row_id, op`,
      [userId],
    );
    return rows.map(({ message, ...row }) => {
      assert.equal(typeof message, "string");
      assert.ok(message.length > 0, `a stored rejection has no message: ${JSON.stringify(row)}`);
      return row;
    });
  }

  before(async () => {
    database = new pg.Pool({ connectionString: databaseURL, max: 2 });
    try {
      await database.query(`CREATE SCHEMA ${schema}`);
    } catch (error) {
      throw new Error(
        `Creating schema ${schema} on the sync PostgreSQL server ${redactedURL(databaseURL)} failed: ${error.message}. ` +
          "Start PostgreSQL there, or set DOORMAN_TEST_SYNC_DATABASE_URL to a database where this user may create schemas.",
      );
    }
    schemaCreated = true;
    await database.query(CREATE_TABLE_SQL(schema));

    doorman = await startDoorman({
      env: {
        DOORMAN_SYNC__POWERSYNC_URL: POWERSYNC_URL,
        DOORMAN_SYNC__DATABASE_URL: databaseURL,
        DOORMAN_SYNC__SCHEMA: schema,
        DOORMAN_SYNC__TABLES__TODOS__COLUMNS: WRITABLE_COLUMNS.join(","),
        DOORMAN_SYNC__TABLES__TODOS__ALLOW_DELETE: "true",
      },
    });
  });

  after(async () => {
    // Doorman stops first, so its pool on the synced database is closed before the schema is dropped.
    try {
      await doorman?.stop();
    } finally {
      try {
        if (schemaCreated) {
          await database.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        }
      } finally {
        await database?.end();
      }
    }
  });

  const modes = [
    { name: "bearer", create: createBearerClient },
    { name: "cookie", create: createCookieClient },
  ];

  for (const mode of modes) {
    test(`${mode.name} user uploads a CrudEntry batch`, async () => {
      const { holder, user } = await signInUser(doorman, mode.create, "upload");
      const headers = deviceHeaders(holder, uniqueDeviceId());
      const credentials = await fetchCredentials(doorman, headers);
      assert.equal(credentials.endpoint, POWERSYNC_URL);

      if (mode.name === "cookie") {
        // A browser sends this preflight before a cross-origin PUT with a custom header.
        const preflight = await fetch(`${doorman.origin}${SYNC_BASE_PATH}/upload`, {
          method: "OPTIONS",
          headers: {
            origin: TRUSTED_ORIGIN,
            "access-control-request-method": "PUT",
            "access-control-request-headers": "content-type,x-device-id",
          },
        });
        assert.equal(preflight.status, 204);
        assert.equal(preflight.headers.get("access-control-allow-origin"), TRUSTED_ORIGIN);
        assert.equal(preflight.headers.get("access-control-allow-credentials"), "true");
        assert.equal(preflight.headers.get("access-control-allow-methods"), "PUT");
        assert.equal(preflight.headers.get("access-control-allow-headers"), "content-type,x-device-id");
      }

      const [milk, call, old] = [randomUUID(), randomUUID(), randomUUID()];
      const queue = new LocalUploadQueue();
      // A PUT carries every non-null column of the local row, the owner column and the
      // server-owned `plan` included.
      queue.transaction(
        putWrite(milk, {
          user_id: FORGED_OWNER,
          description: "Buy milk",
          completed: 0,
          due_at: "2026-05-01T09:30:00.000Z",
          meta: JSON.stringify({ tags: ["home"], priority: 2 }),
          plan: "pro",
        }),
        putWrite(call, { user_id: FORGED_OWNER, description: "Call Ada", completed: 0, plan: "pro" }),
        putWrite(old, { user_id: FORGED_OWNER, description: "Old errand", completed: 1 }),
      );
      queue.transaction(patchWrite(milk, { completed: 1 }));
      queue.transaction(deleteWrite(old));
      const batch = queue.crudBatch();

      assert.deepEqual(
        batch.crud.map((entry) => entry.toJSON().op_id),
        [1, 2, 3, 4, 5],
      );
      assert.deepEqual(
        batch.crud.map((entry) => entry.toJSON().tx_id),
        [1, 1, 1, 2, 3],
      );

      const response = await uploadData(doorman, headers, batch);

      assert.equal(response.status, 200, `PUT ${SYNC_BASE_PATH}/upload returned ${response.status}: ${response.text}`);
      assert.deepEqual(response.body, { applied: 5, rejected: [] });
      assert.equal(queue.completedCount, 1);
      assert.equal(queue.size, 0);

      const expected = [
        todoRow(milk, user.id, {
          description: "Buy milk",
          completed: true,
          due_at: new Date("2026-05-01T09:30:00.000Z"),
          meta: { tags: ["home"], priority: 2 },
        }),
        todoRow(call, user.id, { description: "Call Ada", completed: false }),
      ];
      assert.deepEqual(await readTodos([milk, call, old]), expected);
      assert.equal(await countTodosOwnedBy(FORGED_OWNER), 0, "a row was written with the owner id from the client");
      assert.deepEqual(await readRejections(user.id), []);
    });
  }

  for (const mode of modes) {
    test(`${mode.name} guest upload is forbidden`, async () => {
      const { holder, user } = await signInGuest(doorman, mode.create);
      const headers = deviceHeaders(holder, uniqueDeviceId());

      const empty = await sendUpload(doorman, headers, { operations: [] });
      assert.equal(empty.status, 403, `an empty guest batch returned ${empty.status}: ${empty.text}`);
      assert.equal(empty.body.code, "ANONYMOUS_SYNC_FORBIDDEN");
      assert.equal(typeof empty.body.message, "string");

      const rowId = randomUUID();
      const queue = new LocalUploadQueue();
      queue.transaction(putWrite(rowId, { description: "Guest todo", completed: 0 }));
      const response = await uploadData(doorman, headers, queue.crudBatch());

      assert.equal(response.status, 403, `a guest batch returned ${response.status}: ${response.text}`);
      assert.equal(response.body.code, "ANONYMOUS_SYNC_FORBIDDEN");
      assert.equal(queue.completedCount, 0);
      assert.equal(queue.size, 1);
      assert.deepEqual(await readTodos([rowId]), []);
      assert.equal(await countTodosOwnedBy(user.id), 0);
      assert.deepEqual(await readRejections(user.id), []);
    });
  }

  test("bad value rejects one operation", async () => {
    const { holder, user } = await signInUser(doorman, createBearerClient, "upload");
    const deviceId = uniqueDeviceId();
    const headers = deviceHeaders(holder, deviceId);
    await fetchCredentials(doorman, headers);

    const [good, bad] = [randomUUID(), randomUUID()];
    const queue = new LocalUploadQueue();
    queue.transaction(putWrite(good, { user_id: user.id, description: "Good", completed: 0 }));
    queue.transaction(putWrite(bad, { user_id: user.id, description: "Bad", completed: 0, due_at: "not a date" }));
    queue.transaction(patchWrite(good, { completed: 1 }));

    const response = await uploadData(doorman, headers, queue.crudBatch());

    // A rejection comes with 200, so the connector completes the batch and the client does not
    // retry a write that can never apply.
    assert.equal(response.status, 200, `PUT ${SYNC_BASE_PATH}/upload returned ${response.status}: ${response.text}`);
    assert.equal(response.body.applied, 2);
    assert.equal(response.body.rejected.length, 1);
    const [rejection] = response.body.rejected;
    assert.equal(rejection.index, 1);
    assert.equal(rejection.op, "PUT");
    assert.equal(rejection.type, TABLE);
    assert.equal(rejection.id, bad);
    assert.equal(rejection.code, "INVALID_VALUE");
    assert.match(rejection.message, /timestamp/, "the message is PostgreSQL's cast error");
    assert.equal(queue.completedCount, 1);

    assert.deepEqual(await readTodos([good, bad]), [todoRow(good, user.id, { description: "Good", completed: true })]);
    assert.deepEqual(await readRejections(user.id), [
      { user_id: user.id, device_id: deviceId, op: "PUT", type: TABLE, row_id: bad, code: "INVALID_VALUE" },
    ]);
  });

  test("unregistered device upload is rejected", async () => {
    const { holder, user } = await signInUser(doorman, createBearerClient, "upload");
    const headers = deviceHeaders(holder, uniqueDeviceId());
    const rowId = randomUUID();
    const queue = new LocalUploadQueue();
    queue.transaction(putWrite(rowId, { user_id: user.id, description: "Early", completed: 0 }));

    const rejected = await uploadData(doorman, headers, queue.crudBatch());

    assert.equal(rejected.status, 403, `an upload from an unregistered device returned ${rejected.status}: ${rejected.text}`);
    assert.equal(rejected.body.code, "DEVICE_NOT_REGISTERED");
    assert.equal(typeof rejected.body.message, "string");
    assert.equal(queue.completedCount, 0);
    assert.deepEqual(await readTodos([rowId]), []);

    // The token request registers the device, and the retried batch then applies.
    await fetchCredentials(doorman, headers);
    const retried = await uploadData(doorman, headers, queue.crudBatch());

    assert.equal(retried.status, 200, `the retried upload returned ${retried.status}: ${retried.text}`);
    assert.deepEqual(retried.body, { applied: 1, rejected: [] });
    assert.equal(queue.completedCount, 1);
    assert.deepEqual(await readTodos([rowId]), [todoRow(rowId, user.id, { description: "Early" })]);
  });
});
