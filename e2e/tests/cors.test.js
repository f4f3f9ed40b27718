// CORS for browser apps: credentialed access for trusted origins, no CORS headers for others.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { TRUSTED_ORIGIN, startDoorman } from "../support/doorman.js";

const UNTRUSTED_ORIGIN = "http://evil.example";

let doorman;

before(async () => {
  doorman = await startDoorman();
});

after(async () => {
  await doorman?.stop();
});

function preflight(origin) {
  return fetch(`${doorman.baseURL}/sign-in/anonymous`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
}

test("preflight from trusted origin is allowed", async () => {
  const response = await preflight(TRUSTED_ORIGIN);

  assert.equal(response.status, 204);
  assert.equal(response.headers.get("access-control-allow-origin"), TRUSTED_ORIGIN);
  assert.equal(response.headers.get("access-control-allow-credentials"), "true");
  assert.match(response.headers.get("access-control-allow-methods") ?? "", /\bPOST\b/);
  assert.match(response.headers.get("access-control-allow-headers") ?? "", /\bcontent-type\b/i);
});

test("preflight from untrusted origin gets no CORS headers", async () => {
  const response = await preflight(UNTRUSTED_ORIGIN);

  assert.equal(response.headers.get("access-control-allow-origin"), null);
  assert.equal(response.headers.get("access-control-allow-credentials"), null);
});

test("trusted response exposes set-auth-token", async () => {
  const response = await fetch(`${doorman.baseURL}/sign-in/anonymous`, {
    method: "POST",
    headers: { origin: TRUSTED_ORIGIN, "content-type": "application/json" },
    body: "{}",
  });
  await response.arrayBuffer();

  assert.equal(response.status, 200);
  assert.equal(response.headers.get("access-control-allow-origin"), TRUSTED_ORIGIN);
  assert.equal(response.headers.get("access-control-allow-credentials"), "true");
  const exposed = (response.headers.get("access-control-expose-headers") ?? "").toLowerCase().split(/\s*,\s*/);
  assert.ok(exposed.includes("set-auth-token"), `access-control-expose-headers is ${exposed.join(", ")}`);
});
