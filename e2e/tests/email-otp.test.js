// Sign-in with an email code through the real better-auth client and its emailOTPClient plugin,
// once with cookies and once with bearer tokens. Codes are read from the SMTP sink that the
// harness starts next to each server.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { createBearerClient, createCookieClient } from "../support/clients.js";
import { startDoorman } from "../support/doorman.js";

// Digits per code when `email_otp.length` is not set.
const DEFAULT_CODE_LENGTH = 8;
// `mail.subject` when it is not set.
const DEFAULT_SUBJECT = "Your sign-in code";

// Returns an address that no other test uses, so the per-email send limit and earlier codes of
// other tests cannot interfere.
function uniqueEmail(label) {
  return `${label}-${randomUUID()}@example.com`;
}

// Parses the "name: value" lines that `doorman users show` prints into an object.
function parseUserFields(stdout) {
  const fields = {};
  for (const line of stdout.split("\n")) {
    const match = /^(\w+):\s*(.*)$/.exec(line);
    if (match) {
      fields[match[1]] = match[2];
    }
  }
  return fields;
}

// Returns a code of the same length that differs from `code` in every digit.
function wrongCode(code) {
  return [...code].map((digit) => String((Number(digit) + 1) % 10)).join("");
}

// Each mode gets its own server, because wrong codes count toward the per-IP `code_fail` limit
// (5 failures in 10 minutes by default) and every request comes from 127.0.0.1.
const modes = [
  { name: "cookie", create: (baseURL) => createCookieClient(baseURL) },
  { name: "bearer", create: (baseURL) => createBearerClient(baseURL) },
];

for (const mode of modes) {
  describe(`${mode.name} mode`, () => {
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
      assert.equal(data.user.isAnonymous, true);
      return data;
    }

    // Asks for a sign-in code for `email` and returns the code from the mail sink.
    async function requestCode(holder, email) {
      const { data, error } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
      assert.equal(error, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(error)}`);
      assert.equal(data.success, true);
      return doorman.mail.waitForCode(email);
    }

    async function signInWithCode(holder, email, otp) {
      const { data, error } = await holder.client.signIn.emailOtp({ email, otp });
      assert.equal(error, null, `signIn.emailOtp failed: ${JSON.stringify(error)}`);
      return data;
    }

    test("code sign-in promotes guest", async () => {
      const holder = mode.create(doorman.baseURL);
      const guest = await signInGuest(holder);
      const guestCredentials = holder.credentialHeaders();
      const email = uniqueEmail(`promote-${mode.name}`);

      const code = await requestCode(holder, email);
      assert.match(code, new RegExp(`^\\d{${DEFAULT_CODE_LENGTH}}$`));
      const signIn = await signInWithCode(holder, email, code);

      // The sign-in request carried the guest's credential, which is what makes it a promotion.
      const signInExchange = holder.exchanges.list.findLast((exchange) => exchange.url.endsWith("/sign-in/email-otp"));
      assert.ok(signInExchange, "the client sent no request to /sign-in/email-otp");
      for (const [name, value] of Object.entries(guestCredentials)) {
        assert.equal(signInExchange.requestHeaders.get(name), value, `/sign-in/email-otp was sent without the guest's ${name}`);
      }

      assert.equal(signIn.user.email, email);
      assert.equal(signIn.user.isAnonymous, false);
      assert.notEqual(signIn.user.id, guest.user.id, "the code sign-in returned the guest user");
      assert.equal(typeof signIn.token, "string");
      assert.ok(signIn.token.length > 0, "the code sign-in returned an empty token");

      const { data, error } = await holder.client.getSession();
      assert.equal(error, null);
      assert.notEqual(data, null, "getSession returned no session after the code sign-in");
      assert.equal(data.user.isAnonymous, false);
      assert.equal(data.user.email, email);
      assert.equal(data.user.emailVerified, true);
      assert.equal(data.user.id, signIn.user.id);
      assert.equal(data.session.userId, signIn.user.id);

      // The guest's session went with the guest, so its old credential reads no session.
      assert.notDeepEqual(holder.credentialHeaders(), guestCredentials, "the client still holds the guest's credential");
      assert.equal(await fetchSession(guestCredentials), null);
      const current = await fetchSession(holder.credentialHeaders());
      assert.equal(current?.user.id, signIn.user.id);

      const guestShown = await doorman.showUser(guest.user.id);
      assert.notEqual(guestShown.code, 0, `users show exited 0 for the promoted guest:\n${guestShown.stdout}`);
      assert.match(guestShown.stderr, new RegExp(`user ${guest.user.id} does not exist`));

      const userShown = await doorman.showUser(signIn.user.id);
      assert.equal(userShown.code, 0, `users show failed for the new user:\n${userShown.stderr}`);
      const fields = parseUserFields(userShown.stdout);
      assert.equal(fields.id, signIn.user.id);
      assert.equal(fields.email, email);
      assert.equal(fields.anonymous, "false");
      assert.equal(fields.email_verified, "true");
    });

    test("guest signs in to existing account", async () => {
      const email = uniqueEmail(`existing-${mode.name}`);
      const owner = mode.create(doorman.baseURL);
      const account = await signInWithCode(owner, email, await requestCode(owner, email));

      const holder = mode.create(doorman.baseURL);
      const guest = await signInGuest(holder);
      const guestCredentials = holder.credentialHeaders();
      const signIn = await signInWithCode(holder, email, await requestCode(holder, email));

      assert.equal(signIn.user.id, account.user.id, "the code sign-in created a second user for the same email");
      assert.equal(signIn.user.isAnonymous, false);
      assert.equal(await fetchSession(guestCredentials), null);
      const ownerSession = await fetchSession(owner.credentialHeaders());
      assert.equal(ownerSession?.user.id, account.user.id, "the second sign-in ended the owner's session");

      const guestShown = await doorman.showUser(guest.user.id);
      assert.notEqual(guestShown.code, 0, `users show exited 0 for the promoted guest:\n${guestShown.stdout}`);
      assert.match(guestShown.stderr, new RegExp(`user ${guest.user.id} does not exist`));
    });

    test("email is matched case-insensitively", async () => {
      const holder = mode.create(doorman.baseURL);
      const email = uniqueEmail(`case-${mode.name}`);
      const mixedCase = email.toUpperCase();

      const code = await requestCode(holder, mixedCase);
      const signIn = await signInWithCode(holder, mixedCase, code);

      // Doorman stores and mails the lower-cased address, as Better Auth 1.7.29 does.
      assert.equal(signIn.user.email, email);
      assert.deepEqual(doorman.mail.messagesTo(email).at(-1).envelopeTo, [email]);
    });

    test("used code cannot sign in again", async () => {
      const holder = mode.create(doorman.baseURL);
      const email = uniqueEmail(`reuse-${mode.name}`);
      const code = await requestCode(holder, email);
      const first = await signInWithCode(holder, email, code);

      const other = mode.create(doorman.baseURL);
      const { data, error } = await other.client.signIn.emailOtp({ email, otp: code });
      assert.equal(data, null);
      assert.notEqual(error, null, "a code signed in twice");
      assert.equal(error.status, 400);
      assert.equal(error.code, "INVALID_OTP");

      const session = await holder.client.getSession();
      assert.equal(session.data?.user.id, first.user.id, "the rejected reuse changed the first session");
    });

    test("real session cannot sign in anonymously", async () => {
      const holder = mode.create(doorman.baseURL);
      const email = uniqueEmail(`real-${mode.name}`);
      const signIn = await signInWithCode(holder, email, await requestCode(holder, email));
      assert.equal(signIn.user.isAnonymous, false);

      const { data, error } = await holder.client.signIn.anonymous();
      assert.equal(data, null);
      assert.notEqual(error, null, "a signed-in user got a guest session");
      assert.equal(error.status, 400);
      assert.equal(error.code, "ALREADY_AUTHENTICATED");

      const session = await holder.client.getSession();
      assert.equal(session.data?.user.id, signIn.user.id, "the rejected anonymous sign-in changed the session");
      assert.equal(session.data?.user.isAnonymous, false);
    });

    test("wrong code is rejected", async () => {
      const holder = mode.create(doorman.baseURL);
      const guest = await signInGuest(holder);
      const email = uniqueEmail(`wrong-${mode.name}`);
      const code = await requestCode(holder, email);

      const { data, error } = await holder.client.signIn.emailOtp({ email, otp: wrongCode(code) });
      assert.equal(data, null);
      assert.notEqual(error, null, "a wrong code signed in");
      assert.equal(error.status, 400);
      assert.equal(error.code, "INVALID_OTP");

      const session = await holder.client.getSession();
      assert.equal(session.data?.user.id, guest.user.id, "the rejected code changed the guest session");
      assert.equal(session.data?.user.isAnonymous, true);

      // One wrong try stays below `email_otp.max_attempts` (3 by default), so the code still works.
      const signIn = await signInWithCode(holder, email, code);
      assert.equal(signIn.user.email, email);
    });

    test("code message format", async () => {
      const holder = mode.create(doorman.baseURL);
      const email = uniqueEmail(`message-${mode.name}`);
      const code = await requestCode(holder, email);

      const message = await doorman.mail.waitForMessage(email);
      assert.equal(doorman.mail.messagesTo(email).length, 1);
      assert.deepEqual(message.envelopeTo, [email]);
      // The harness sets mail.from to "Doorman <auth@example.com>".
      assert.deepEqual(message.parsed.from?.value, [{ name: "Doorman", address: "auth@example.com" }]);
      assert.deepEqual(message.parsed.to?.value.map((mailbox) => mailbox.address), [email]);
      assert.equal(message.subject, DEFAULT_SUBJECT);
      assert.ok(!message.subject.includes(code), "the subject contains the code");
      assert.equal(message.contentType, "multipart/alternative");
      assert.match(message.text, new RegExp(`Your sign-in code is ${code}\\b`));
      assert.ok(message.html?.includes(code), "the HTML part does not contain the code");
    });
  });
}

describe("code limits", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman();
  });

  after(async () => {
    await doorman?.stop();
  });

  test("fourth code per email is limited", async () => {
    const holder = createCookieClient(doorman.baseURL);
    const email = uniqueEmail("send-limit");

    // `code_send` allows 3 codes per email in 10 minutes by default.
    for (let sent = 1; sent <= 3; sent += 1) {
      const { error } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
      assert.equal(error, null, `code ${sent} of 3 was rejected: ${JSON.stringify(error)}`);
    }
    const { data, error } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });

    assert.equal(data, null);
    assert.notEqual(error, null, "a fourth code within the window was sent");
    assert.equal(error.status, 429);
    assert.equal(error.code, "RATE_LIMITED");
    const retryAfter = Number(holder.exchanges.last().responseHeaders.get("retry-after"));
    assert.ok(retryAfter > 0, `Retry-After is ${retryAfter}, expected at least 1 second`);
    assert.ok(retryAfter <= 600, `Retry-After is ${retryAfter}, expected at most the 600-second window`);
    assert.equal(doorman.mail.messagesTo(email).length, 3);

    // The limit is per email, so another address still gets a code.
    const other = uniqueEmail("send-limit-other");
    const otherSend = await holder.client.emailOtp.sendVerificationOtp({ email: other, type: "sign-in" });
    assert.equal(otherSend.error, null, `a code to another email was rejected: ${JSON.stringify(otherSend.error)}`);
  });

  test("code burns after three wrong tries", async () => {
    const holder = createBearerClient(doorman.baseURL);
    const email = uniqueEmail("burn");
    const { error: sendError } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
    assert.equal(sendError, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sendError)}`);
    const code = await doorman.mail.waitForCode(email);

    // `email_otp.max_attempts` is 3 by default.
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      const { error } = await holder.client.signIn.emailOtp({ email, otp: wrongCode(code) });
      assert.equal(error?.code, "INVALID_OTP", `wrong try ${attempt} returned ${JSON.stringify(error)}`);
    }
    const { data, error } = await holder.client.signIn.emailOtp({ email, otp: code });

    assert.equal(data, null);
    assert.notEqual(error, null, "the right code signed in after three wrong tries");
    assert.equal(error.status, 403);
    assert.equal(error.code, "TOO_MANY_ATTEMPTS");
    assert.equal(holder.token(), null, "the client received a session token");
  });
});

describe("code failure limit", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman();
  });

  after(async () => {
    await doorman?.stop();
  });

  test("sixth try after five failures is limited", async () => {
    const holder = createCookieClient(doorman.baseURL);

    // `code_fail` allows 5 failed tries per client IP in 10 minutes by default, across all emails.
    // No code was sent to these addresses, so each try fails with INVALID_OTP.
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const { error } = await holder.client.signIn.emailOtp({ email: uniqueEmail("unsent"), otp: "00000000" });
      assert.equal(error?.code, "INVALID_OTP", `failed try ${attempt} returned ${JSON.stringify(error)}`);
    }

    const email = uniqueEmail("after-limit");
    const { error: sendError } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
    assert.equal(sendError, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sendError)}`);
    const code = await doorman.mail.waitForCode(email);
    const { data, error } = await holder.client.signIn.emailOtp({ email, otp: code });

    assert.equal(data, null);
    assert.notEqual(error, null, "a sign-in passed after five failures");
    assert.equal(error.status, 429);
    assert.equal(error.code, "RATE_LIMITED");
    assert.ok(holder.exchanges.last().responseHeaders.get("retry-after"), "the 429 response has no Retry-After header");
    assert.equal(holder.jar.header(), undefined, "the limited sign-in set a cookie");
  });
});

describe("concurrent code sign-ins", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman();
  });

  after(async () => {
    await doorman?.stop();
  });

  test("code signs in only once", async () => {
    const email = uniqueEmail("race");
    const requester = createCookieClient(doorman.baseURL);
    const { error: sendError } = await requester.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
    assert.equal(sendError, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sendError)}`);
    const code = await doorman.mail.waitForCode(email);

    // Three clients present the same code at once. The two rejections count toward the per-IP
    // `code_fail` limit of 5, which stays out of reach because this server is used by no other test.
    const holders = [createCookieClient(doorman.baseURL), createBearerClient(doorman.baseURL), createCookieClient(doorman.baseURL)];
    const results = await Promise.all(holders.map((holder) => holder.client.signIn.emailOtp({ email, otp: code })));

    const signedIn = results.filter((result) => result.error === null);
    const rejected = results.filter((result) => result.error !== null);
    assert.equal(signedIn.length, 1, `${signedIn.length} of 3 concurrent sign-ins with one code succeeded`);
    for (const { error } of rejected) {
      assert.equal(error.status, 400);
      assert.equal(error.code, "INVALID_OTP");
    }
    assert.equal(signedIn[0].data.user.email, email);
  });
});

describe("code expiry", () => {
  const expiresInMs = 1_000;
  let doorman;

  before(async () => {
    doorman = await startDoorman({ env: { DOORMAN_EMAIL_OTP__EXPIRES_IN: `${expiresInMs}ms` } });
  });

  after(async () => {
    await doorman?.stop();
  });

  test("expired code is rejected", async () => {
    const holder = createCookieClient(doorman.baseURL);
    const email = uniqueEmail("expired");
    const { error: sendError } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
    assert.equal(sendError, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sendError)}`);
    const code = await doorman.mail.waitForCode(email);

    await new Promise((resolve) => setTimeout(resolve, expiresInMs + 500));
    const { data, error } = await holder.client.signIn.emailOtp({ email, otp: code });

    assert.equal(data, null);
    assert.notEqual(error, null, "an expired code signed in");
    assert.equal(error.status, 400);
    assert.equal(error.code, "OTP_EXPIRED");
    assert.equal(holder.jar.header(), undefined, "the rejected sign-in set a cookie");
  });
});

describe("code requests", () => {
  let doorman;

  before(async () => {
    doorman = await startDoorman();
  });

  after(async () => {
    await doorman?.stop();
  });

  test("unsupported code type is rejected", async () => {
    const holder = createCookieClient(doorman.baseURL);
    const email = uniqueEmail("type");

    const { data, error } = await holder.client.emailOtp.sendVerificationOtp({ email, type: "email-verification" });
    assert.equal(data, null);
    assert.notEqual(error, null, "an email-verification code was sent");
    assert.equal(error.status, 400);
    assert.equal(error.code, "UNSUPPORTED_OTP_TYPE");
    assert.equal(doorman.mail.messagesTo(email).length, 0, "a message was sent for a rejected request");
  });

  test("invalid email is rejected", async () => {
    const holder = createBearerClient(doorman.baseURL);

    const { data, error } = await holder.client.emailOtp.sendVerificationOtp({ email: "not-an-email", type: "sign-in" });
    assert.equal(data, null);
    assert.notEqual(error, null, "a code was sent to an invalid address");
    assert.equal(error.status, 400);
    assert.equal(error.code, "INVALID_EMAIL");
    assert.equal(doorman.mail.messages.length, 0, "a message was sent for a rejected request");
  });
});
