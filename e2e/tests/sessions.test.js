// Guest sessions through the real better-auth client, once with cookies and once with bearer
// tokens. Every test starts a new client, so each one works with its own guest.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { SESSION_COOKIE, createBearerClient, createCookieClient } from "../support/clients.js";
import { startDoorman } from "../support/doorman.js";

// The format of JavaScript's Date.prototype.toISOString, which a Better Auth server sends.
const WIRE_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let doorman;

before(async () => {
  doorman = await startDoorman();
});

after(async () => {
  await doorman?.stop();
});

// Sends GET /get-session with the given headers and no client library, and returns the parsed
// JSON body. A plain request shows what the server stores, independent of the client's state.
async function fetchSession(headers) {
  const response = await fetch(`${doorman.baseURL}/get-session`, { headers });
  assert.equal(response.status, 200, `GET /get-session returned ${response.status}`);
  return response.json();
}

async function signInGuest(holder) {
  const { data, error } = await holder.client.signIn.anonymous();
  assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
  return data;
}

const modes = [
  { name: "cookie", create: () => createCookieClient(doorman.baseURL) },
  { name: "bearer", create: () => createBearerClient(doorman.baseURL) },
];

for (const mode of modes) {
  describe(`${mode.name} mode`, () => {
    test("anonymous sign-in creates guest session", async () => {
      const holder = mode.create();

      const signIn = await signInGuest(holder);
      assert.equal(signIn.user.isAnonymous, true);
      assert.equal(typeof signIn.token, "string");
      assert.ok(signIn.token.length > 0, "sign-in returned an empty token");

      const { data, error } = await holder.client.getSession();
      assert.equal(error, null);
      assert.notEqual(data, null, "getSession returned no session after sign-in");
      assert.equal(data.user.isAnonymous, true);
      assert.equal(data.user.id, signIn.user.id);
      assert.equal(data.session.userId, signIn.user.id);
      assert.ok(data.session.expiresAt instanceof Date, "session.expiresAt is not a Date");
      assert.ok(data.session.createdAt instanceof Date, "session.createdAt is not a Date");
      assert.ok(data.user.createdAt instanceof Date, "user.createdAt is not a Date");
      assert.ok(data.session.expiresAt.getTime() > Date.now(), "session.expiresAt is not in the future");
    });

    test("session timestamps have millisecond precision", async () => {
      const holder = mode.create();
      await signInGuest(holder);

      const body = await fetchSession(holder.credentialHeaders());
      assert.notEqual(body, null, "GET /get-session returned null for a new guest");
      for (const [path, value] of [
        ["session.expiresAt", body.session.expiresAt],
        ["session.createdAt", body.session.createdAt],
        ["session.updatedAt", body.session.updatedAt],
        ["user.createdAt", body.user.createdAt],
        ["user.updatedAt", body.user.updatedAt],
      ]) {
        assert.match(value, WIRE_TIMESTAMP, `${path} is not an ISO 8601 UTC time with 3 fractional digits`);
      }
    });

    test("second anonymous sign-in is rejected", async () => {
      const holder = mode.create();
      const first = await signInGuest(holder);

      const { data, error } = await holder.client.signIn.anonymous();
      assert.equal(data, null);
      assert.notEqual(error, null, "a second anonymous sign-in succeeded");
      assert.equal(error.status, 400);
      assert.equal(error.code, "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY");

      const session = await holder.client.getSession();
      assert.equal(session.data?.user.id, first.user.id, "the rejected sign-in changed the session");
    });

    test("sign-out ends session", async () => {
      const holder = mode.create();
      await signInGuest(holder);
      const credentials = holder.credentialHeaders();

      const { data, error } = await holder.client.signOut();
      assert.equal(error, null, `signOut failed: ${JSON.stringify(error)}`);
      assert.equal(data.success, true);

      const session = await holder.client.getSession();
      assert.equal(session.error, null);
      assert.equal(session.data, null);
      // The credential from before sign-out no longer works, so the server deleted the session
      // and did not merely clear the cookie.
      assert.equal(await fetchSession(credentials), null);
    });

    test("deleteAnonymousUser removes guest", async () => {
      const holder = mode.create();
      await signInGuest(holder);
      const credentials = holder.credentialHeaders();

      const { data, error } = await holder.client.deleteAnonymousUser();
      assert.equal(error, null, `deleteAnonymousUser failed: ${JSON.stringify(error)}`);
      assert.equal(data.success, true);

      const session = await holder.client.getSession();
      assert.equal(session.error, null);
      assert.equal(session.data, null);
      assert.equal(await fetchSession(credentials), null);
    });

    test("updateUser changes name", async () => {
      const holder = mode.create();
      await signInGuest(holder);

      const { data, error } = await holder.client.updateUser({ name: "Ada Guest" });
      assert.equal(error, null, `updateUser failed: ${JSON.stringify(error)}`);
      assert.equal(data.status, true);

      const session = await holder.client.getSession();
      assert.equal(session.error, null);
      assert.equal(session.data?.user.name, "Ada Guest");
      assert.equal(session.data?.user.isAnonymous, true);
    });

    test("listSessions returns current session", async () => {
      const holder = mode.create();
      await signInGuest(holder);
      const current = await holder.client.getSession();
      assert.notEqual(current.data, null, "getSession returned no session after sign-in");

      const { data, error } = await holder.client.listSessions();
      assert.equal(error, null, `listSessions failed: ${JSON.stringify(error)}`);
      assert.ok(Array.isArray(data), "listSessions did not return an array");
      assert.equal(data.length, 1);
      assert.equal(data[0].id, current.data.session.id);
      assert.equal(data[0].userId, current.data.user.id);
      assert.ok(data[0].expiresAt instanceof Date, "expiresAt of the listed session is not a Date");
    });
  });
}

describe("cookie mode credentials", () => {
  test("sign-in sets session cookie and auth token", async () => {
    const holder = createCookieClient(doorman.baseURL);
    await signInGuest(holder);

    const cookie = holder.jar.get(SESSION_COOKIE);
    assert.ok(cookie, `sign-in set no ${SESSION_COOKIE} cookie`);
    const authToken = holder.exchanges.last().responseHeaders.get("set-auth-token");
    assert.ok(authToken, "sign-in response has no set-auth-token header");
    // The cookie carries the same signed value as the header, percent-encoded.
    assert.equal(decodeURIComponent(cookie), authToken);
  });

  test("requests carry Origin and cookie", async () => {
    const holder = createCookieClient(doorman.baseURL);
    await signInGuest(holder);
    await holder.client.getSession();

    const request = holder.exchanges.last().requestHeaders;
    assert.equal(request.get("origin"), "http://localhost:5173");
    assert.match(request.get("cookie") ?? "", new RegExp(`(^|; )${SESSION_COOKIE.replace(".", "\\.")}=`));
    assert.equal(request.get("authorization"), null);
  });
});

describe("bearer mode credentials", () => {
  test("requests carry bearer token only", async () => {
    const holder = createBearerClient(doorman.baseURL);
    await signInGuest(holder);
    await holder.client.getSession();

    assert.ok(holder.token(), "the client stored no set-auth-token value");
    const request = holder.exchanges.last().requestHeaders;
    assert.equal(request.get("authorization"), `Bearer ${holder.token()}`);
    for (const exchange of holder.exchanges.list) {
      assert.equal(exchange.requestHeaders.get("cookie"), null, `${exchange.url} was sent with a cookie`);
    }
  });

  test("session needs the bearer token", async () => {
    const holder = createBearerClient(doorman.baseURL);
    const signIn = await signInGuest(holder);

    assert.equal(await fetchSession({}), null);
    const body = await fetchSession(holder.credentialHeaders());
    assert.equal(body?.user.id, signIn.user.id);
  });
});
