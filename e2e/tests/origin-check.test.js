// The CSRF rule: a state-changing request that carries a cookie must name a trusted origin.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
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

// Asks for a sign-in code with the cookie-mode client and returns the code from the mail sink.
async function requestCode(holder, email) {
  const { error } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
  assert.equal(error, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(error)}`);
  return doorman.mail.waitForCode(email);
}

test("cookie code sign-in without Origin is rejected", async () => {
  const { holder, cookie } = await cookieGuest();
  const guest = await holder.client.getSession();
  const email = `origin-${randomUUID()}@example.com`;
  const code = await requestCode(holder, email);

  const response = await postExact(`${doorman.baseURL}/sign-in/email-otp`, { cookie }, JSON.stringify({ email, otp: code }));

  assert.equal(response.status, 403, `sign-in returned ${response.status}: ${response.text}`);
  assert.equal(response.body.code, "MISSING_OR_NULL_ORIGIN");
  assert.equal(response.headers["set-cookie"], undefined);
  const guestLookup = await doorman.showUser(guest.data.user.id);
  assert.equal(guestLookup.code, 0, `the rejected sign-in deleted the guest:\n${guestLookup.stderr}`);

  // The rejection came before the code was checked, so the code still signs in from the app.
  const { data, error } = await holder.client.signIn.emailOtp({ email, otp: code });
  assert.equal(error, null, `signIn.emailOtp failed: ${JSON.stringify(error)}`);
  assert.equal(data.user.email, email);
});

test("browser code request without Origin is rejected", async () => {
  const email = `origin-${randomUUID()}@example.com`;

  const response = await postExact(
    `${doorman.baseURL}/email-otp/send-verification-otp`,
    { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site" },
    JSON.stringify({ email, type: "sign-in" }),
  );

  assert.equal(response.status, 403, `send-verification-otp returned ${response.status}: ${response.text}`);
  assert.equal(response.body.code, "MISSING_OR_NULL_ORIGIN");
  assert.equal(doorman.mail.messagesTo(email).length, 0, "a code was sent for a rejected request");
});

test("cross-site navigation code request is rejected", async () => {
  const email = `origin-${randomUUID()}@example.com`;

  const response = await postExact(
    `${doorman.baseURL}/email-otp/send-verification-otp`,
    { "sec-fetch-mode": "navigate", "sec-fetch-site": "cross-site", origin: TRUSTED_ORIGIN },
    JSON.stringify({ email, type: "sign-in" }),
  );

  assert.equal(response.status, 403, `send-verification-otp returned ${response.status}: ${response.text}`);
  assert.equal(response.body.code, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED");
  assert.equal(doorman.mail.messagesTo(email).length, 0, "a code was sent for a rejected request");
});

test("non-browser code request without Origin succeeds", async () => {
  const email = `origin-${randomUUID()}@example.com`;

  const response = await postExact(
    `${doorman.baseURL}/email-otp/send-verification-otp`,
    {},
    JSON.stringify({ email, type: "sign-in" }),
  );

  assert.equal(response.status, 200, `send-verification-otp returned ${response.status}: ${response.text}`);
  assert.equal(response.body.success, true);
  assert.match(await doorman.mail.waitForCode(email), /^\d+$/);
});
