// Sign-ins shared by the sync tests: a real user by email code, a guest, and unique ids.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

export function uniqueEmail(label) {
  return `${label}-${randomUUID()}@example.com`;
}

// A value for `X-Device-ID`: letters, digits and '-', 40 characters.
export function uniqueDeviceId() {
  return `e2e-${randomUUID()}`;
}

// Signs in a new user with an email code, without a guest session first, and returns the
// client holder and the user. `create` is createCookieClient or createBearerClient; `label`
// starts the email address.
export async function signInUser(doorman, create, label) {
  const holder = create(doorman.baseURL);
  const email = uniqueEmail(`${label}-${holder.mode}`);

  const sent = await holder.client.emailOtp.sendVerificationOtp({ email, type: "sign-in" });
  assert.equal(sent.error, null, `emailOtp.sendVerificationOtp failed: ${JSON.stringify(sent.error)}`);
  const otp = await doorman.mail.waitForCode(email);

  const { data, error } = await holder.client.signIn.emailOtp({ email, otp });
  assert.equal(error, null, `signIn.emailOtp failed: ${JSON.stringify(error)}`);
  assert.equal(data.user.isAnonymous, false);
  return { holder, user: data.user };
}

// Signs in a new guest and returns the client holder and the user.
export async function signInGuest(doorman, create) {
  const holder = create(doorman.baseURL);
  const { data, error } = await holder.client.signIn.anonymous();
  assert.equal(error, null, `signIn.anonymous failed: ${JSON.stringify(error)}`);
  assert.equal(data.user.isAnonymous, true);
  return { holder, user: data.user };
}
