// Sync tokens for PowerSync, checked the way the PowerSync service checks them: jose's jwtVerify
// with a remote JWKS from GET /powersync/jwks, the sync audience and the EdDSA algorithm.
// powersync-service (packages/service-core/src/auth/KeyStore.ts) also calls jose.jwtVerify,
// requires the claims aud, sub, iat and exp, and rejects a token whose exp - iat exceeds its
// configured maximum age.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as jose from "jose";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";

// The PowerSync service URL that Doorman returns as `powerSyncUrl`. No request goes to it.
const POWERSYNC_URL = "https://sync.example.com";
// The sync routes are mounted at the root under `sync.base_path`, not under /api/auth.
const SYNC_BASE_PATH = "/powersync";
// `sync.audience` and `sync.token_ttl` when they are not set.
const DEFAULT_AUDIENCE = "powersync";
const DEFAULT_TTL_SECONDS = 3600;
// Start-up rejects a `sync.token_ttl` over 24 hours.
const MAX_TTL_SECONDS = 86_400;
// The claims that powersync-service requires in every sync token.
const POWERSYNC_REQUIRED_CLAIMS = ["aud", "sub", "iat", "exp"];

function uniqueEmail(label) {
  return `${label}-${randomUUID()}@example.com`;
}

// A value for `X-Device-ID`: letters, digits and '-', 40 characters.
function uniqueDeviceId() {
  return `e2e-${randomUUID()}`;
}

// Signs in a new user with an email code, without a guest session first, and returns the
// client holder and the user. `create` is createCookieClient or createBearerClient.
async function signInUser(doorman, create) {
  const holder = create(doorman.baseURL);
  const email = uniqueEmail(`sync-${holder.mode}`);

  const sent = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
  assert.equal(sent.error, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sent.error)}`);
  const otp = await doorman.mail.waitForCode(email);

  const { data, error } = await holder.client.signIn.emailOtp({ email, otp });
  assert.equal(error, null, `signIn.emailOtp failed: ${JSON.stringify(error)}`);
  assert.equal(data.user.isAnonymous, false);
  return { holder, user: data.user };
}

async function signInGuest(doorman, create) {
  const holder = create(doorman.baseURL);
  const { data, error } = await holder.client.signIn.anonymous();
  assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
  assert.equal(data.user.isAnonymous, true);
  return { holder, user: data.user };
}

// Returns the headers that present the holder's session in a plain fetch. Cookie requests also
// carry the trusted Origin, as a browser app sends it.
function sessionHeaders(holder) {
  const headers = holder.credentialHeaders();
  assert.ok(Object.keys(headers).length > 0, `the ${holder.mode} client holds no session`);
  return holder.mode === "cookie" ? { ...headers, origin: TRUSTED_ORIGIN } : headers;
}

// Sends GET /powersync/token and returns the status, headers, raw text and parsed body.
async function requestSyncToken(doorman, headers) {
  const response = await fetch(`${doorman.origin}${SYNC_BASE_PATH}/token`, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) };
}

// Returns a sync token for the holder's session on a new device, after checking the response.
async function fetchSyncToken(doorman, holder) {
  const response = await requestSyncToken(doorman, { ...sessionHeaders(holder), "x-device-id": uniqueDeviceId() });
  assert.equal(response.status, 200, `GET ${SYNC_BASE_PATH}/token returned ${response.status}: ${response.text}`);
  assert.equal(typeof response.body.token, "string");
  return response;
}

// Returns a general JWT from GET /api/auth/token for the holder's session.
async function fetchGeneralToken(doorman, holder) {
  const response = await fetch(`${doorman.baseURL}/token`, { headers: sessionHeaders(holder) });
  const text = await response.text();
  assert.equal(response.status, 200, `GET /api/auth/token returned ${response.status}: ${text}`);
  const { token } = JSON.parse(text);
  assert.equal(typeof token, "string");
  return token;
}

async function fetchJwks(url) {
  const response = await fetch(url);
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${url} returned ${response.status}: ${text}`);
  const jwks = JSON.parse(text);
  assert.ok(Array.isArray(jwks.keys), `${url} has no "keys" array: ${text}`);
  return jwks;
}

const syncJwksURL = (doorman) => new URL(`${doorman.origin}${SYNC_BASE_PATH}/jwks`);
const generalJwksURL = (doorman) => new URL(`${doorman.baseURL}/jwks`);

// Verifies `token` with the JWKS, audience, algorithm and required claims that PowerSync checks.
// Each call builds a new remote key set, so keys cached by an earlier test are not used.
function verifyAsPowerSync(doorman, token, audience) {
  return jose.jwtVerify(token, jose.createRemoteJWKSet(syncJwksURL(doorman)), {
    audience,
    algorithms: ["EdDSA"],
    requiredClaims: POWERSYNC_REQUIRED_CLAIMS,
  });
}

const modes = [
  { name: "cookie", create: createCookieClient },
  { name: "bearer", create: createBearerClient },
];

describe("default sync settings", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman({ env: { DOORMAN_SYNC__POWERSYNC_URL: POWERSYNC_URL } });
  });

  after(async () => {
    await doorman?.stop();
  });

  for (const mode of modes) {
    test(`${mode.name} user's sync token verifies`, async () => {
      const { holder, user } = await signInUser(doorman, mode.create);
      const requestedAt = Math.floor(Date.now() / 1000);

      const response = await fetchSyncToken(doorman, holder);
      assert.equal(response.body.powerSyncUrl, POWERSYNC_URL);
      assert.equal(response.headers.get("cache-control"), "no-store");

      const { payload, protectedHeader } = await verifyAsPowerSync(doorman, response.body.token, DEFAULT_AUDIENCE);

      assert.equal(protectedHeader.alg, "EdDSA");
      assert.equal(typeof protectedHeader.kid, "string");
      const jwks = await fetchJwks(syncJwksURL(doorman));
      const kids = jwks.keys.map((key) => key.kid);
      assert.ok(kids.includes(protectedHeader.kid), `kid ${protectedHeader.kid} is not in the sync JWKS (${kids.join(", ")})`);

      assert.equal(payload.sub, user.id);
      assert.equal(payload.user_id, user.id);
      assert.equal(payload.aud, DEFAULT_AUDIENCE);
      assert.ok(Number.isInteger(payload.iat), `iat is not an integer: ${payload.iat}`);
      assert.ok(Number.isInteger(payload.exp), `exp is not an integer: ${payload.exp}`);
      assert.ok(payload.exp - payload.iat <= MAX_TTL_SECONDS, `exp - iat is ${payload.exp - payload.iat} seconds`);
      assert.equal(payload.exp - payload.iat, DEFAULT_TTL_SECONDS);
      // The server and the test share a clock, so iat falls within a few seconds of the request.
      assert.ok(Math.abs(payload.iat - requestedAt) <= 5, `iat ${payload.iat} is far from the request time ${requestedAt}`);
      assert.equal(response.body.expiresAt, new Date(payload.exp * 1000).toISOString());
    });
  }

  test("sync JWKS has only public Ed25519 keys", async () => {
    const jwks = await fetchJwks(syncJwksURL(doorman));

    assert.ok(jwks.keys.length > 0, "the sync JWKS has no keys");
    for (const key of jwks.keys) {
      assert.equal(key.kty, "OKP", `key ${key.kid}`);
      assert.equal(key.crv, "Ed25519", `key ${key.kid}`);
      assert.equal(key.alg, "EdDSA", `key ${key.kid}`);
      assert.equal(key.use, "sig", `key ${key.kid}`);
      assert.equal(typeof key.kid, "string");
      assert.ok(key.kid.length > 0, "a sync key has an empty kid");
      assert.equal(typeof key.x, "string", `key ${key.kid}`);
      // An Ed25519 public key is 32 bytes, 43 characters of unpadded base64url.
      assert.equal(Buffer.from(key.x, "base64url").length, 32, `key ${key.kid}`);
    }
  });

  test("JWKS documents have no private members", async () => {
    for (const url of [syncJwksURL(doorman), generalJwksURL(doorman)]) {
      const jwks = await fetchJwks(url);
      assert.ok(jwks.keys.length > 0, `${url} has no keys`);
      for (const key of jwks.keys) {
        // `d` is the private part of an OKP, EC or RSA key, and `k` is a symmetric key.
        assert.equal(Object.hasOwn(key, "d"), false, `key ${key.kid} of ${url} has a "d" member`);
        assert.equal(Object.hasOwn(key, "k"), false, `key ${key.kid} of ${url} has a "k" member`);
      }
    }
  });

  test("sync and general key rings differ", async () => {
    const syncKids = (await fetchJwks(syncJwksURL(doorman))).keys.map((key) => key.kid);
    const generalKids = (await fetchJwks(generalJwksURL(doorman))).keys.map((key) => key.kid);

    for (const kid of syncKids) {
      assert.equal(generalKids.includes(kid), false, `kid ${kid} is in both JWKS documents`);
    }
  });

  test("general JWT fails sync verification", async () => {
    const { holder } = await signInUser(doorman, createBearerClient);
    const generalToken = await fetchGeneralToken(doorman, holder);

    // The token is valid against the general JWKS, with the server origin as its audience and
    // issuer, so the failures below come from the key set.
    await jose.jwtVerify(generalToken, jose.createRemoteJWKSet(generalJwksURL(doorman)), {
      audience: doorman.origin,
      issuer: doorman.origin,
      algorithms: ["EdDSA"],
    });

    await assert.rejects(verifyAsPowerSync(doorman, generalToken, DEFAULT_AUDIENCE), jose.errors.JWKSNoMatchingKey);
    // Without an audience option the audience cannot cause the failure.
    await assert.rejects(jose.jwtVerify(generalToken, jose.createRemoteJWKSet(syncJwksURL(doorman))), jose.errors.JWKSNoMatchingKey);

    // A verifier that ignores kid and tries every sync key still finds no key that signed it.
    const syncKeys = (await fetchJwks(syncJwksURL(doorman))).keys;
    for (const jwk of syncKeys) {
      const key = await jose.importJWK(jwk, "EdDSA");
      await assert.rejects(jose.jwtVerify(generalToken, key), jose.errors.JWSSignatureVerificationFailed, `sync key ${jwk.kid} verified a general JWT`);
    }
  });

  test("sync token fails general verification", async () => {
    const { holder } = await signInUser(doorman, createBearerClient);
    const { body } = await fetchSyncToken(doorman, holder);

    await assert.rejects(jose.jwtVerify(body.token, jose.createRemoteJWKSet(generalJwksURL(doorman))), jose.errors.JWKSNoMatchingKey);

    const generalKeys = (await fetchJwks(generalJwksURL(doorman))).keys;
    for (const jwk of generalKeys) {
      const key = await jose.importJWK(jwk, jwk.alg);
      await assert.rejects(jose.jwtVerify(body.token, key), jose.errors.JWSSignatureVerificationFailed, `general key ${jwk.kid} verified a sync token`);
    }
  });

  test("sync token opens no session", async () => {
    const { holder } = await signInUser(doorman, createBearerClient);
    const { body } = await fetchSyncToken(doorman, holder);
    const headers = { authorization: `Bearer ${body.token}` };

    const session = await fetch(`${doorman.baseURL}/get-session`, { headers });
    assert.equal(session.status, 200);
    assert.equal(await session.json(), null, "a sync token opened a session");

    const again = await requestSyncToken(doorman, { ...headers, "x-device-id": uniqueDeviceId() });
    assert.equal(again.status, 401, `a sync token as bearer got ${again.status}: ${again.text}`);
  });

  for (const mode of modes) {
    test(`${mode.name} guest gets no sync token`, async () => {
      const { holder, user } = await signInGuest(doorman, mode.create);

      const response = await requestSyncToken(doorman, { ...sessionHeaders(holder), "x-device-id": uniqueDeviceId() });

      assert.equal(response.status, 403, `GET ${SYNC_BASE_PATH}/token returned ${response.status}: ${response.text}`);
      assert.equal(response.body.code, "ANONYMOUS_SYNC_FORBIDDEN");
      assert.equal(typeof response.body.message, "string");
      assert.equal(response.body.token, undefined);

      // A rejected guest must not register a device, so no device row names the guest.
      const devices = await doorman.cli("devices", "list", "--user", user.id);
      assert.equal(devices.code, 0, `doorman devices list failed:\n${devices.stderr}`);
      assert.equal(devices.stdout.includes(user.id), false, `a device was registered for the guest:\n${devices.stdout}`);
    });
  }
});

describe("custom audience and lifetime", () => {
  const audience = "custom-aud";
  let doorman;

  before(async () => {
    doorman = await startDoorman({
      env: {
        DOORMAN_SYNC__POWERSYNC_URL: POWERSYNC_URL,
        DOORMAN_SYNC__AUDIENCE: audience,
        DOORMAN_SYNC__TOKEN_TTL: "10m",
      },
    });
  });

  after(async () => {
    await doorman?.stop();
  });

  test("custom audience and lifetime apply", async () => {
    const { holder, user } = await signInUser(doorman, createBearerClient);
    const { body } = await fetchSyncToken(doorman, holder);

    const { payload } = await verifyAsPowerSync(doorman, body.token, audience);
    assert.equal(payload.aud, audience);
    assert.equal(payload.sub, user.id);
    assert.equal(payload.exp - payload.iat, 600);

    for (const wrongAudience of [DEFAULT_AUDIENCE, POWERSYNC_URL, doorman.origin]) {
      await assert.rejects(
        verifyAsPowerSync(doorman, body.token, wrongAudience),
        (error) => error instanceof jose.errors.JWTClaimValidationFailed && error.claim === "aud",
        `the token passed the audience check for ${wrongAudience}`,
      );
    }
  });
});
