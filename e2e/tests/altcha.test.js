// The built-in proof of work (`captcha.provider = "altcha"`) in front of guest sign-in and code
// sending. Challenges are solved with `solveChallenge` from the real `altcha-lib` package (version
// pinned in `package.json`), the solver that the ALTCHA widget runs. The solution goes in the
// `x-captcha-response` header as the widget sends it: base64 of the JSON
// `{challenge, solution: {counter, derivedKey}}`.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { solveChallenge } from "altcha-lib";
import { deriveKey } from "altcha-lib/algorithms/pbkdf2";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";

const CAPTCHA_HEADER = "x-captcha-response";
// PBKDF2 iterations per try. With the key prefix "00" a solver needs 256 tries on average, so a
// solve costs about 256,000 iterations.
const ALTCHA_COST = 1000;
// `captcha.challenge_ttl` when it is not set.
const DEFAULT_CHALLENGE_TTL_SECONDS = 300;
// `captcha.challenge_ttl` of the server that checks expiry.
const SHORT_CHALLENGE_TTL_SECONDS = 4;

const ALTCHA_ENV = {
  DOORMAN_CAPTCHA__PROVIDER: "altcha",
  DOORMAN_CAPTCHA__ALTCHA_COST: String(ALTCHA_COST),
};

// Returns an address that no other test uses, so the per-email send limit cannot interfere.
function uniqueEmail(label) {
  return `${label}-${randomUUID()}@example.com`;
}

// Encodes a solved challenge as the widget's `x-captcha-response` value.
function encodePayload(challenge, solution) {
  return btoa(JSON.stringify({ challenge, solution }));
}

// Sends GET /captcha/challenge from the trusted origin and returns the response and its JSON body.
async function requestChallenge(doorman) {
  const response = await fetch(`${doorman.baseURL}/captcha/challenge`, { headers: { origin: TRUSTED_ORIGIN } });
  const body = await response.json();
  return { response, body };
}

async function fetchChallenge(doorman) {
  const { response, body } = await requestChallenge(doorman);
  assert.equal(response.status, 200, `GET /captcha/challenge returned ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

// Solves `challenge` with altcha-lib and returns `{counter, derivedKey}`.
async function solve(challenge) {
  const result = await solveChallenge({ challenge, deriveKey });
  assert.notEqual(result, null, "altcha-lib found no solution before its timeout");
  return { counter: result.counter, derivedKey: result.derivedKey };
}

// Fetches a challenge, solves it and returns the challenge, the solution and the encoded payload.
async function solvedChallenge(doorman) {
  const challenge = await fetchChallenge(doorman);
  const solution = await solve(challenge);
  return { challenge, solution, payload: encodePayload(challenge, solution) };
}

// Derives the key for one counter as the protocol defines it: PBKDF2 over the nonce followed by
// the counter as a big-endian unsigned 32-bit integer, with the challenge's salt.
async function deriveKeyHex(parameters, counter) {
  const counterBytes = Buffer.alloc(4);
  counterBytes.writeUInt32BE(counter);
  const password = Buffer.concat([Buffer.from(parameters.nonce, "hex"), counterBytes]);
  const { derivedKey } = await deriveKey(parameters, Buffer.from(parameters.salt, "hex"), password);
  return Buffer.from(derivedKey).toString("hex");
}

// Returns the first counter whose honestly derived key lacks the challenge's key prefix, with
// that key.
async function nonSolution(parameters) {
  for (let counter = 0; ; counter += 1) {
    const derivedKey = await deriveKeyHex(parameters, counter);
    if (!derivedKey.startsWith(parameters.keyPrefix)) {
      return { counter, derivedKey };
    }
  }
}

// Returns `hex` with its last digit changed.
function alterLastDigit(hex) {
  const last = hex.at(-1) === "0" ? "1" : "0";
  return `${hex.slice(0, -1)}${last}`;
}

// Sends POST /sign-in/anonymous from the trusted origin with no client library. `payload`
// undefined sends no `x-captcha-response` header.
async function signInWithPayload(doorman, payload) {
  const headers = { origin: TRUSTED_ORIGIN, "content-type": "application/json" };
  if (payload !== undefined) {
    headers[CAPTCHA_HEADER] = payload;
  }
  const response = await fetch(`${doorman.baseURL}/sign-in/anonymous`, { method: "POST", headers, body: "{}" });
  return { status: response.status, body: await response.json() };
}

function assertVerificationFailed(result, description) {
  assert.equal(result.status, 403, `${description} returned ${result.status}: ${JSON.stringify(result.body)}`);
  assert.equal(result.body.code, "CAPTCHA_VERIFICATION_FAILED");
}

// Returns the ids that `doorman users list` prints, newest first.
async function listUserIds(doorman) {
  const { code, stdout, stderr } = await doorman.cli("users", "list", "--limit", "10000");
  assert.equal(code, 0, `doorman users list failed: ${stderr}`);
  const [header, ...rows] = stdout.split("\n").filter((line) => line.trim() !== "");
  assert.match(header, /^id\s+email\s+anonymous\s+created$/, "unexpected header of doorman users list");
  return rows.map((row) => row.split(/\s+/)[0]);
}

describe("altcha provider", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman({ env: ALTCHA_ENV });
  });

  after(async () => {
    await doorman?.stop();
  });

  test("challenge has protocol 2 parameters", async () => {
    const issuedAfterSeconds = Math.floor(Date.now() / 1000);
    const { response, body } = await requestChallenge(doorman);
    const issuedBeforeSeconds = Math.ceil(Date.now() / 1000);

    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(response.headers.get("access-control-allow-origin"), TRUSTED_ORIGIN);
    assert.deepEqual(Object.keys(body).sort(), ["parameters", "signature"]);
    assert.match(body.signature, /^[0-9a-f]{64}$/);

    const { parameters } = body;
    assert.deepEqual(Object.keys(parameters).sort(), [
      "algorithm",
      "cost",
      "expiresAt",
      "keyLength",
      "keyPrefix",
      "nonce",
      "salt",
    ]);
    assert.equal(parameters.algorithm, "PBKDF2/SHA-256");
    assert.equal(parameters.cost, ALTCHA_COST);
    assert.equal(parameters.keyLength, 32);
    assert.equal(parameters.keyPrefix, "00");
    assert.match(parameters.nonce, /^[0-9a-f]{32}$/);
    assert.match(parameters.salt, /^[0-9a-f]{32}$/);
    // expiresAt is in seconds, as altcha-lib 2.8.0 writes and checks it.
    assert.ok(Number.isInteger(parameters.expiresAt), `expiresAt ${parameters.expiresAt} is not an integer`);
    assert.ok(
      parameters.expiresAt >= issuedAfterSeconds + DEFAULT_CHALLENGE_TTL_SECONDS - 1,
      `expiresAt ${parameters.expiresAt} is earlier than ${DEFAULT_CHALLENGE_TTL_SECONDS} s after issue`,
    );
    assert.ok(
      parameters.expiresAt <= issuedBeforeSeconds + DEFAULT_CHALLENGE_TTL_SECONDS,
      `expiresAt ${parameters.expiresAt} is later than ${DEFAULT_CHALLENGE_TTL_SECONDS} s after issue`,
    );

    const second = await fetchChallenge(doorman);
    assert.notEqual(second.parameters.nonce, parameters.nonce, "two challenges share a nonce");
    assert.notEqual(second.parameters.salt, parameters.salt, "two challenges share a salt");
    assert.notEqual(second.signature, body.signature, "two challenges share a signature");
  });

  test("preflight allows x-captcha-response header", async () => {
    const response = await fetch(`${doorman.baseURL}/sign-in/anonymous`, {
      method: "OPTIONS",
      headers: {
        origin: TRUSTED_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": `content-type,${CAPTCHA_HEADER}`,
      },
    });

    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), TRUSTED_ORIGIN);
    assert.match(response.headers.get("access-control-allow-headers") ?? "", /\bx-captcha-response\b/i);
  });

  const modes = [
    { name: "cookie", create: () => createCookieClient(doorman.baseURL) },
    { name: "bearer", create: () => createBearerClient(doorman.baseURL) },
  ];

  for (const mode of modes) {
    test(`solved challenge signs in guest (${mode.name})`, async () => {
      const holder = mode.create();
      const { payload } = await solvedChallenge(doorman);

      // better-auth 1.7.29 merges `fetchOptions.headers` of one call into that request's headers.
      const { data, error } = await holder.client.signIn.anonymous({
        fetchOptions: { headers: { [CAPTCHA_HEADER]: payload } },
      });
      assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
      assert.equal(data.user.isAnonymous, true);
      const signInExchange = holder.exchanges.last();
      assert.ok(signInExchange.url.endsWith("/sign-in/anonymous"), `last request went to ${signInExchange.url}`);
      assert.equal(signInExchange.requestHeaders.get(CAPTCHA_HEADER), payload);

      const session = await holder.client.getSession();
      assert.equal(session.error, null);
      assert.notEqual(session.data, null, "getSession returned no session after sign-in");
      assert.equal(session.data.user.isAnonymous, true);
      assert.equal(session.data.user.id, data.user.id);

      const ids = await listUserIds(doorman);
      assert.ok(ids.includes(data.user.id), `doorman users list does not show the guest ${data.user.id}`);
    });
  }

  test("replayed payload is rejected", async () => {
    const { payload } = await solvedChallenge(doorman);
    const first = await signInWithPayload(doorman, payload);
    assert.equal(first.status, 200, `first sign-in returned ${first.status}: ${JSON.stringify(first.body)}`);
    const usersBefore = await listUserIds(doorman);

    const holder = createCookieClient(doorman.baseURL);
    const { data, error } = await holder.client.signIn.anonymous({
      fetchOptions: { headers: { [CAPTCHA_HEADER]: payload } },
    });
    assert.equal(data, null);
    assert.notEqual(error, null, "a replayed payload signed in a second guest");
    assert.equal(error.status, 403);
    assert.equal(error.code, "CAPTCHA_VERIFICATION_FAILED");

    const session = await holder.client.getSession();
    assert.equal(session.data, null, "the rejected sign-in created a session");
    assert.deepEqual(await listUserIds(doorman), usersBefore, "the rejected sign-in changed the users");
  });

  test("concurrent uses of one payload pass once", async () => {
    const { payload } = await solvedChallenge(doorman);
    const usersBefore = await listUserIds(doorman);

    const results = await Promise.all(Array.from({ length: 5 }, () => signInWithPayload(doorman, payload)));

    const passed = results.filter((result) => result.status === 200);
    assert.equal(passed.length, 1, `statuses: ${results.map((result) => result.status).join(", ")}`);
    for (const result of results.filter((result) => result.status !== 200)) {
      assertVerificationFailed(result, "a concurrent use of a spent payload");
    }
    const usersAfter = await listUserIds(doorman);
    assert.equal(usersAfter.length, usersBefore.length + 1);
    assert.equal(usersAfter[0], passed[0].body.user.id);
  });

  const wrongSolutions = [
    {
      name: "next counter with found key",
      wrong: async (challenge, solution) => ({ counter: solution.counter + 1, derivedKey: solution.derivedKey }),
    },
    {
      name: "found counter with altered key",
      wrong: async (challenge, solution) => ({
        counter: solution.counter,
        derivedKey: alterLastDigit(solution.derivedKey),
      }),
    },
    {
      // The key matches its counter, so only the key prefix check can reject it.
      name: "honest key without prefix",
      wrong: async (challenge, solution) => {
        const ownKey = await deriveKeyHex(challenge.parameters, solution.counter);
        assert.equal(ownKey, solution.derivedKey, "deriveKeyHex disagrees with altcha-lib's solver");
        return nonSolution(challenge.parameters);
      },
    },
  ];

  for (const { name, wrong } of wrongSolutions) {
    test(`wrong solution spends challenge: ${name}`, async () => {
      const { challenge, solution, payload } = await solvedChallenge(doorman);
      const wrongSolution = await wrong(challenge, solution);
      const usersBefore = await listUserIds(doorman);

      const rejected = await signInWithPayload(doorman, encodePayload(challenge, wrongSolution));
      assertVerificationFailed(rejected, `the wrong solution ${JSON.stringify(wrongSolution)}`);

      // A challenge is spent at its first verification attempt, so its correct solution fails now.
      const late = await signInWithPayload(doorman, payload);
      assertVerificationFailed(late, "the correct solution after a wrong one");
      assert.deepEqual(await listUserIds(doorman), usersBefore, "a rejected sign-in changed the users");
    });
  }

  test("missing header is rejected", async () => {
    const usersBefore = await listUserIds(doorman);
    const holder = createCookieClient(doorman.baseURL);

    const { data, error } = await holder.client.signIn.anonymous();
    assert.equal(data, null);
    assert.notEqual(error, null, "sign-in without x-captcha-response succeeded");
    assert.equal(error.status, 400);
    assert.equal(error.code, "MISSING_CAPTCHA_RESPONSE");
    assert.equal(holder.jar.header(), undefined, "the rejected sign-in set a cookie");

    const session = await holder.client.getSession();
    assert.equal(session.error, null);
    assert.equal(session.data, null, "the rejected sign-in created a session");
    assert.deepEqual(await listUserIds(doorman), usersBefore, "the rejected sign-in created a user");
  });

  const malformedPayloads = [
    { name: "not base64", payload: "not base64!" },
    { name: "base64 of non-JSON", payload: btoa("not json") },
    { name: "challenge without signature", payload: null },
  ];

  for (const { name, payload } of malformedPayloads) {
    test(`malformed payload is rejected: ${name}`, async () => {
      let sent = payload;
      if (sent === null) {
        const { challenge, solution } = await solvedChallenge(doorman);
        sent = encodePayload({ parameters: challenge.parameters }, solution);
      }
      const usersBefore = await listUserIds(doorman);

      assertVerificationFailed(await signInWithPayload(doorman, sent), `the payload "${sent}"`);
      assert.deepEqual(await listUserIds(doorman), usersBefore, "a rejected sign-in created a user");
    });
  }

  const tamperings = [
    { name: "cost lowered", change: (parameters) => ({ ...parameters, cost: 1 }) },
    { name: "keyPrefix shortened", change: (parameters) => ({ ...parameters, keyPrefix: "0" }) },
    { name: "expiresAt extended", change: (parameters) => ({ ...parameters, expiresAt: parameters.expiresAt + 3600 }) },
  ];

  for (const { name, change } of tamperings) {
    test(`tampered challenge is rejected: ${name}`, async () => {
      const challenge = await fetchChallenge(doorman);
      const tampered = { parameters: change(challenge.parameters), signature: challenge.signature };
      const tamperedSolution = await solve(tampered);
      const usersBefore = await listUserIds(doorman);

      const rejected = await signInWithPayload(doorman, encodePayload(tampered, tamperedSolution));
      assertVerificationFailed(rejected, `the challenge with ${name}`);
      assert.deepEqual(await listUserIds(doorman), usersBefore, "a rejected sign-in created a user");

      // The untouched challenge, solved honestly, passes, so the rejection came from the change.
      // It also shows that a payload whose signature does not verify spends no challenge.
      const honest = await signInWithPayload(doorman, encodePayload(challenge, await solve(challenge)));
      assert.equal(honest.status, 200, `the untouched challenge returned ${honest.status}: ${JSON.stringify(honest.body)}`);
    });
  }

  test("code sending requires solved challenge", async () => {
    const holder = createCookieClient(doorman.baseURL);
    const email = uniqueEmail("altcha");

    const missing = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
    assert.notEqual(missing.error, null, "a code request without x-captcha-response succeeded");
    assert.equal(missing.error.status, 400);
    assert.equal(missing.error.code, "MISSING_CAPTCHA_RESPONSE");
    assert.equal(doorman.mail.messagesTo(email).length, 0, "a rejected code request sent mail");

    const { payload } = await solvedChallenge(doorman);
    const { data, error } = await holder.client.emailOtp.sendVerificationOtp({
      email,
      type: "sign-in",
      fetchOptions: { headers: { [CAPTCHA_HEADER]: payload } },
    });
    assert.equal(error, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(error)}`);
    assert.equal(data.success, true);
    assert.match(await doorman.mail.waitForCode(email), /^\d+$/);

    const otherEmail = uniqueEmail("altcha-replay");
    const replay = await holder.client.emailOtp.sendVerificationOtp({
      email: otherEmail,
      type: "sign-in",
      fetchOptions: { headers: { [CAPTCHA_HEADER]: payload } },
    });
    assert.notEqual(replay.error, null, "a replayed payload sent a second code");
    assert.equal(replay.error.status, 403);
    assert.equal(replay.error.code, "CAPTCHA_VERIFICATION_FAILED");
    assert.equal(doorman.mail.messagesTo(otherEmail).length, 0, "a rejected code request sent mail");
  });
});

describe("altcha provider with short challenge lifetime", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman({
      env: { ...ALTCHA_ENV, DOORMAN_CAPTCHA__CHALLENGE_TTL: `${SHORT_CHALLENGE_TTL_SECONDS}s` },
    });
  });

  after(async () => {
    await doorman?.stop();
  });

  test("expired challenge is rejected", async () => {
    // A challenge used at once passes, so the later rejection comes from the expiry.
    const fresh = await solvedChallenge(doorman);
    const passed = await signInWithPayload(doorman, fresh.payload);
    assert.equal(passed.status, 200, `a fresh challenge returned ${passed.status}: ${JSON.stringify(passed.body)}`);

    const { challenge, payload } = await solvedChallenge(doorman);
    assert.ok(
      challenge.parameters.expiresAt <= Math.ceil(Date.now() / 1000) + SHORT_CHALLENGE_TTL_SECONDS,
      `expiresAt ${challenge.parameters.expiresAt} is later than the configured ${SHORT_CHALLENGE_TTL_SECONDS} s`,
    );
    const waitMs = challenge.parameters.expiresAt * 1000 + 500 - Date.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, waitMs)));

    assertVerificationFailed(await signInWithPayload(doorman, payload), "an expired challenge");
  });
});

describe("other provider", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman();
  });

  after(async () => {
    await doorman?.stop();
  });

  test("challenge route returns 404", async () => {
    const { response, body } = await requestChallenge(doorman);

    assert.equal(response.status, 404);
    assert.equal(body.code, "NOT_FOUND");
  });
});
