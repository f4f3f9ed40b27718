// The CSRF rule: a state-changing request that carries a cookie must name a trusted origin.

import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, test } from "node:test";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";

let doorman;

before(async () => {
  doorman = await startDoorman();
});

after(async () => {
  await doorman?.stop();
});

// Signs in a guest with the cookie-mode client and returns the client and its Cookie header.
async function cookieGuest() {
  const holder = createCookieClient(doorman.baseURL);
  const { error } = await holder.client.signIn.anonymous();
  assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
  const cookie = holder.jar.header();
  assert.ok(cookie, "sign-in set no cookie");
  return { holder, cookie };
}

async function signOutWith(headers) {
  const response = await fetch(`${doorman.baseURL}/sign-out`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: "{}",
  });
  return { status: response.status, body: await response.json() };
}

test("cookie sign-out without Origin is rejected", async () => {
  const { holder, cookie } = await cookieGuest();

  const { status, body } = await signOutWith({ cookie });
  assert.equal(status, 403);
  assert.equal(body.code, "MISSING_OR_NULL_ORIGIN");
  assert.equal(typeof body.message, "string");

  const session = await holder.client.getSession();
  assert.notEqual(session.data, null, "the rejected sign-out ended the session");
});

test("cookie sign-out from untrusted origin is rejected", async () => {
  const { holder, cookie } = await cookieGuest();

  const { status, body } = await signOutWith({ cookie, origin: "http://evil.example" });
  assert.equal(status, 403);
  assert.equal(body.code, "INVALID_ORIGIN");

  const session = await holder.client.getSession();
  assert.notEqual(session.data, null, "the rejected sign-out ended the session");
});

test("cookie sign-out from trusted origin succeeds", async () => {
  const { holder, cookie } = await cookieGuest();

  const { status, body } = await signOutWith({ cookie, origin: TRUSTED_ORIGIN });
  assert.equal(status, 200);
  assert.equal(body.success, true);

  const response = await fetch(`${doorman.baseURL}/get-session`, { headers: { cookie } });
  assert.equal(await response.json(), null);
  assert.equal((await holder.client.getSession()).data, null);
});

test("bearer sign-out without Origin succeeds", async () => {
  const holder = createBearerClient(doorman.baseURL);
  const { error } = await holder.client.signIn.anonymous();
  assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
  const credentials = holder.credentialHeaders();
  assert.ok(credentials.authorization, "sign-in returned no set-auth-token header");

  const { status, body } = await signOutWith(credentials);
  assert.equal(status, 200);
  assert.equal(body.success, true);

  const response = await fetch(`${doorman.baseURL}/get-session`, { headers: credentials });
  assert.equal(await response.json(), null);
});

// Sends a POST with exactly the given headers. node:http adds none of its own, while fetch in
// Node 20 always sends `Sec-Fetch-Mode: cors` and overwrites any other value of that header.
function postExact(url, headers, body) {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
    });
    request.on("error", reject);
    request.on("response", (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: response.statusCode, headers: response.headers, text, body: JSON.parse(text) });
      });
    });
    request.end(body);
  });
}

test("browser sign-in without Origin is rejected", async () => {
  const response = await postExact(
    `${doorman.baseURL}/sign-in/anonymous`,
    { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site" },
    "{}",
  );

  assert.equal(response.status, 403, `sign-in returned ${response.status}: ${response.text}`);
  assert.equal(response.body.code, "MISSING_OR_NULL_ORIGIN");
  assert.equal(response.headers["set-cookie"], undefined);
});

test("cross-site navigation sign-in is rejected", async () => {
  const response = await postExact(
    `${doorman.baseURL}/sign-in/anonymous`,
    { "sec-fetch-mode": "navigate", "sec-fetch-site": "cross-site", origin: TRUSTED_ORIGIN },
    "{}",
  );

  assert.equal(response.status, 403, `sign-in returned ${response.status}: ${response.text}`);
  assert.equal(response.body.code, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED");
  assert.equal(response.headers["set-cookie"], undefined);
});

test("non-browser sign-in without Origin succeeds", async () => {
  const response = await postExact(`${doorman.baseURL}/sign-in/anonymous`, {}, "{}");

  assert.equal(response.status, 200, `sign-in returned ${response.status}: ${response.text}`);
  assert.equal(response.body.user.isAnonymous, true);
  assert.ok(response.headers["set-auth-token"], "sign-in response has no set-auth-token header");
});
