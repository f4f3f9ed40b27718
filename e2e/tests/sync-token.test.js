// Sync tokens for PowerSync, checked the way the PowerSync service checks them. jose's jwtVerify
// gets a remote JWKS from GET /powersync/jwks (EdDSA, RS256 and ES256) or the shared key (HS256),
// the sync audience, and the one algorithm that `sync.alg` selects.
// powersync-service (packages/service-core/src/auth/KeyStore.ts) also calls jose.jwtVerify,
// requires the claims aud, sub, iat and exp, and rejects a token whose exp - iat exceeds its
// configured maximum age. Its RemoteJWKSCollector.ts skips JWKS keys whose kty is not RSA, OKP or
// EC, so an HS256 key reaches it only as an inline key in its configuration.

import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as jose from "jose";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";
import { signInGuest, signInUser, uniqueDeviceId } from "../support/users.js";

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

// The public key that each asymmetric `sync.alg` publishes in the sync JWKS: the JWK members with
// a fixed value, and the decoded length in bytes of each other public member.
const PUBLIC_KEY_SHAPES = {
  EdDSA: { fixed: { kty: "OKP", crv: "Ed25519" }, lengths: { x: 32 } },
  // A 2048-bit modulus and the public exponent 65537.
  RS256: { fixed: { kty: "RSA", e: "AQAB" }, lengths: { n: 256 } },
  // The uncompressed P-256 point, 32 bytes per coordinate.
  ES256: { fixed: { kty: "EC", crv: "P-256" }, lengths: { x: 32, y: 32 } },
};

// JWK members that carry private or symmetric key material: `d` of OKP, EC and RSA keys, the
// other RSA private members, and `k` of a symmetric (oct) key.
const SECRET_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

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

// Verifies `token` with the sync JWKS, audience, algorithm and required claims that PowerSync
// checks. Each call builds a new remote key set, so keys cached by an earlier test are not used.
function verifyAsPowerSync(doorman, token, audience, alg = "EdDSA") {
  return jose.jwtVerify(token, jose.createRemoteJWKSet(syncJwksURL(doorman)), {
    audience,
    algorithms: [alg],
    requiredClaims: POWERSYNC_REQUIRED_CLAIMS,
  });
}

// Signs in a new user with `create`, fetches a sync token for it on a new device and checks the
// response fields that do not depend on `sync.alg`. Returns the user, the response body and the
// request time in whole seconds.
async function issueUserSyncToken(doorman, create) {
  const { holder, user } = await signInUser(doorman, create, "sync");
  const requestedAt = Math.floor(Date.now() / 1000);

  const response = await fetchSyncToken(doorman, holder);
  assert.equal(response.body.powerSyncUrl, POWERSYNC_URL);
  assert.equal(response.headers.get("cache-control"), "no-store");
  return { user, body: response.body, requestedAt };
}

// Checks the claims of a sync token for `userId` that a server with the default audience and
// lifetime issued at about `requestedAt`, and the `expiresAt` that came with it.
function assertDefaultSyncClaims(payload, body, userId, requestedAt) {
  assert.equal(payload.sub, userId);
  assert.equal(payload.user_id, userId);
  assert.equal(payload.aud, DEFAULT_AUDIENCE);
  assert.ok(Number.isInteger(payload.iat), `iat is not an integer: ${payload.iat}`);
  assert.ok(Number.isInteger(payload.exp), `exp is not an integer: ${payload.exp}`);
  assert.ok(payload.exp - payload.iat <= MAX_TTL_SECONDS, `exp - iat is ${payload.exp - payload.iat} seconds`);
  assert.equal(payload.exp - payload.iat, DEFAULT_TTL_SECONDS);
  // The server and the test share a clock, so iat falls within a few seconds of the request.
  assert.ok(Math.abs(payload.iat - requestedAt) <= 5, `iat ${payload.iat} is far from the request time ${requestedAt}`);
  assert.equal(body.expiresAt, new Date(payload.exp * 1000).toISOString());
}

// Signs in a user, fetches a sync token and verifies it against the sync JWKS with `alg`, as
// PowerSync does with a `jwks_uri`. The header must carry `alg` and a kid of that JWKS.
async function assertSyncTokenVerifies(doorman, create, alg) {
  const { user, body, requestedAt } = await issueUserSyncToken(doorman, create);

  const { payload, protectedHeader } = await verifyAsPowerSync(doorman, body.token, DEFAULT_AUDIENCE, alg);

  assert.equal(protectedHeader.alg, alg);
  assert.equal(typeof protectedHeader.kid, "string");
  const jwks = await fetchJwks(syncJwksURL(doorman));
  const kids = jwks.keys.map((key) => key.kid);
  assert.ok(kids.includes(protectedHeader.kid), `kid ${protectedHeader.kid} is not in the sync JWKS (${kids.join(", ")})`);
  assertDefaultSyncClaims(payload, body, user.id, requestedAt);
}

// Checks that the sync JWKS is not empty and contains only public keys of `alg` with the members
// that PUBLIC_KEY_SHAPES lists for it.
async function assertPublicSyncKeys(doorman, alg) {
  const shape = PUBLIC_KEY_SHAPES[alg];
  const jwks = await fetchJwks(syncJwksURL(doorman));

  assert.ok(jwks.keys.length > 0, "the sync JWKS has no keys");
  for (const key of jwks.keys) {
    assert.equal(typeof key.kid, "string");
    assert.ok(key.kid.length > 0, "a sync key has an empty kid");
    assert.equal(key.alg, alg, `key ${key.kid}`);
    assert.equal(key.use, "sig", `key ${key.kid}`);
    for (const [member, value] of Object.entries(shape.fixed)) {
      assert.equal(key[member], value, `member ${member} of key ${key.kid}`);
    }
    for (const [member, length] of Object.entries(shape.lengths)) {
      assert.equal(typeof key[member], "string", `member ${member} of key ${key.kid}`);
      assert.equal(Buffer.from(key[member], "base64url").length, length, `member ${member} of key ${key.kid}`);
    }
  }
}

// Checks that no key of the JWKS at `url` is symmetric or carries a private member.
function assertNoSecretMembers(jwks, url) {
  for (const key of jwks.keys) {
    assert.notEqual(key.kty, "oct", `key ${key.kid} of ${url} is a symmetric key`);
    for (const member of SECRET_JWK_MEMBERS) {
      assert.equal(Object.hasOwn(key, member), false, `key ${key.kid} of ${url} has a "${member}" member`);
    }
  }
}

async function assertRingsDiffer(doorman) {
  const syncKids = (await fetchJwks(syncJwksURL(doorman))).keys.map((key) => key.kid);
  const generalKids = (await fetchJwks(generalJwksURL(doorman))).keys.map((key) => key.kid);

  for (const kid of syncKids) {
    assert.equal(generalKids.includes(kid), false, `kid ${kid} is in both JWKS documents`);
  }
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
      await assertSyncTokenVerifies(doorman, mode.create, "EdDSA");
    });
  }

  test("sync JWKS has only public Ed25519 keys", async () => {
    await assertPublicSyncKeys(doorman, "EdDSA");
  });

  test("JWKS documents have no private members", async () => {
    for (const url of [syncJwksURL(doorman), generalJwksURL(doorman)]) {
      const jwks = await fetchJwks(url);
      assert.ok(jwks.keys.length > 0, `${url} has no keys`);
      assertNoSecretMembers(jwks, url);
    }
  });

  test("sync and general key rings differ", async () => {
    await assertRingsDiffer(doorman);
  });

  test("general JWT fails sync verification", async () => {
    const { holder } = await signInUser(doorman, createBearerClient, "sync");
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
    const { holder } = await signInUser(doorman, createBearerClient, "sync");
    const { body } = await fetchSyncToken(doorman, holder);

    await assert.rejects(jose.jwtVerify(body.token, jose.createRemoteJWKSet(generalJwksURL(doorman))), jose.errors.JWKSNoMatchingKey);

    const generalKeys = (await fetchJwks(generalJwksURL(doorman))).keys;
    for (const jwk of generalKeys) {
      const key = await jose.importJWK(jwk, jwk.alg);
      await assert.rejects(jose.jwtVerify(body.token, key), jose.errors.JWSSignatureVerificationFailed, `general key ${jwk.kid} verified a sync token`);
    }
  });

  test("sync token opens no session", async () => {
    const { holder } = await signInUser(doorman, createBearerClient, "sync");
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
    const { holder, user } = await signInUser(doorman, createBearerClient, "sync");
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

for (const alg of ["RS256", "ES256"]) {
  describe(`sync.alg ${alg}`, () => {
    let doorman;

    before(async () => {
      doorman = await startDoorman({ env: { DOORMAN_SYNC__POWERSYNC_URL: POWERSYNC_URL, DOORMAN_SYNC__ALG: alg } });
    });

    after(async () => {
      await doorman?.stop();
    });

    for (const mode of modes) {
      test(`${mode.name} user's ${alg} sync token verifies`, async () => {
        await assertSyncTokenVerifies(doorman, mode.create, alg);
      });
    }

    test(`sync JWKS has only public ${alg} keys`, async () => {
      await assertPublicSyncKeys(doorman, alg);
    });

    test(`${alg} JWKS documents have no private members`, async () => {
      for (const url of [syncJwksURL(doorman), generalJwksURL(doorman)]) {
        const jwks = await fetchJwks(url);
        assert.ok(jwks.keys.length > 0, `${url} has no keys`);
        assertNoSecretMembers(jwks, url);
      }
    });

    test(`${alg} sync and general rings differ`, async () => {
      await assertRingsDiffer(doorman);

      // `sync.alg` applies to the sync ring only, so general JWTs stay EdDSA.
      const generalKeys = (await fetchJwks(generalJwksURL(doorman))).keys;
      assert.ok(generalKeys.length > 0, "the general JWKS has no keys");
      for (const key of generalKeys) {
        assert.equal(key.alg, "EdDSA", `general key ${key.kid}`);
      }
    });

    test(`${alg} sync token fails general verification`, async () => {
      const { holder } = await signInUser(doorman, createBearerClient, "sync");
      const { body } = await fetchSyncToken(doorman, holder);

      await assert.rejects(
        jose.jwtVerify(body.token, jose.createRemoteJWKSet(generalJwksURL(doorman)), { algorithms: [alg] }),
        jose.errors.JWKSNoMatchingKey,
      );
    });
  });
}

describe("sync.alg HS256", () => {
  // The shared key that PowerSync's configuration would contain as an inline key, and its kid.
  const sharedKey = randomBytes(32);
  const sharedKeyText = sharedKey.toString("base64url");
  const sharedKid = `e2e-hs256-${randomUUID()}`;
  let doorman;

  before(async () => {
    doorman = await startDoorman({
      env: {
        DOORMAN_SYNC__POWERSYNC_URL: POWERSYNC_URL,
        DOORMAN_SYNC__ALG: "HS256",
        DOORMAN_SYNC__HS256_SECRET: sharedKeyText,
        DOORMAN_SYNC__HS256_KID: sharedKid,
      },
    });
  });

  after(async () => {
    await doorman?.stop();
  });

  for (const mode of modes) {
    test(`${mode.name} user's HS256 sync token verifies`, async () => {
      const { user, body, requestedAt } = await issueUserSyncToken(doorman, mode.create);
      // PowerSync verifies with the bytes of the inline key, so the base64url text is decoded.
      const secretBytes = Buffer.from(sharedKeyText, "base64url");

      const { payload, protectedHeader } = await jose.jwtVerify(body.token, secretBytes, {
        algorithms: ["HS256"],
        audience: DEFAULT_AUDIENCE,
        requiredClaims: POWERSYNC_REQUIRED_CLAIMS,
      });

      assert.equal(protectedHeader.alg, "HS256");
      assert.equal(protectedHeader.kid, sharedKid);
      assertDefaultSyncClaims(payload, body, user.id, requestedAt);
    });
  }

  test("JWKS documents have no symmetric key", async () => {
    for (const url of [syncJwksURL(doorman), generalJwksURL(doorman)]) {
      const response = await fetch(url);
      const text = await response.text();
      assert.equal(response.status, 200, `GET ${url} returned ${response.status}: ${text}`);
      const jwks = JSON.parse(text);
      assert.ok(Array.isArray(jwks.keys), `${url} has no "keys" array: ${text}`);

      assertNoSecretMembers(jwks, url);
      for (const key of jwks.keys) {
        assert.notEqual(key.kid, sharedKid, `${url} publishes a key with the HS256 kid`);
      }
      // The shared key appears in no member, in the base64url form it was configured in or in
      // standard base64.
      assert.equal(text.includes(sharedKeyText), false, `${url} contains the HS256 key`);
      assert.equal(text.includes(sharedKey.toString("base64").replace(/=+$/, "")), false, `${url} contains the HS256 key`);
    }

    const generalKeys = (await fetchJwks(generalJwksURL(doorman))).keys;
    assert.ok(generalKeys.length > 0, "the general JWKS has no keys");
  });

  test("HS256 sync token fails sync JWKS verification", async () => {
    const { holder } = await signInUser(doorman, createBearerClient, "sync");
    const { body } = await fetchSyncToken(doorman, holder);

    // A key set of jose 6.2.19 rejects every HMAC algorithm before it looks at a key, so each
    // published key is imported with jose.importJWK, as PowerSync's KeySpec.importKey does, and
    // tried on its own. An oct key would import as its bytes and verify the token.
    const syncKeys = (await fetchJwks(syncJwksURL(doorman))).keys;
    for (const jwk of syncKeys) {
      const key = await jose.importJWK(jwk);
      await assert.rejects(
        jose.jwtVerify(body.token, key, { audience: DEFAULT_AUDIENCE }),
        `sync key ${jwk.kid} (${jwk.kty}) verified an HS256 sync token`,
      );
    }
  });
});
