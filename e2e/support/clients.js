// Better Auth clients in the two ways an app can hold a Doorman session: a cookie, as a browser
// does, or a bearer token from the `set-auth-token` response header.

import { createAuthClient } from "better-auth/client";
import { anonymousClient, emailOTPClient } from "better-auth/client/plugins";

import { TRUSTED_ORIGIN } from "./doorman.js";

export const SESSION_COOKIE = "doorman.session_token";

/** Request headers and response headers of every request a client sent, in order. */
class Exchanges {
  constructor() {
    this.list = [];
  }

  async send(input, init, headers) {
    const response = await fetch(input, { ...init, headers });
    this.list.push({ url: String(input), requestHeaders: headers, responseHeaders: response.headers });
    return response;
  }

  last() {
    return this.list.at(-1);
  }
}

/**
 * A minimal cookie store for one host: it keeps name and raw value and drops a cookie that a
 * `Set-Cookie` header expires with `Max-Age` of 0 or less or an `Expires` date in the past.
 * Path, domain and the other attributes are ignored because every test talks to one server.
 */
export class CookieJar {
  constructor() {
    this.cookies = new Map();
  }

  store(setCookieHeaders) {
    for (const header of setCookieHeaders) {
      const [pair, ...attributes] = header.split(";");
      const separator = pair.indexOf("=");
      if (separator < 1) {
        continue;
      }
      const name = pair.slice(0, separator).trim();
      const value = pair.slice(separator + 1).trim();
      if (isExpired(attributes)) {
        this.cookies.delete(name);
      } else {
        this.cookies.set(name, value);
      }
    }
  }

  get(name) {
    return this.cookies.get(name);
  }

  /** Returns the `Cookie` request header value, or undefined when the jar is empty. */
  header() {
    if (this.cookies.size === 0) {
      return undefined;
    }
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }
}

function isExpired(attributes) {
  for (const attribute of attributes) {
    const separator = attribute.indexOf("=");
    const name = (separator < 0 ? attribute : attribute.slice(0, separator)).trim().toLowerCase();
    const value = separator < 0 ? "" : attribute.slice(separator + 1).trim();
    if (name === "max-age" && Number(value) <= 0) {
      return true;
    }
    if (name === "expires" && Date.parse(value) <= Date.now()) {
      return true;
    }
  }
  return false;
}

/**
 * Creates a client that sends cookies from its own jar and `Origin: http://localhost:5173` on every
 * request, as a browser app on that origin does.
 *
 * `credentialHeaders()` returns the headers that present the current session in a plain fetch.
 */
export function createCookieClient(baseURL) {
  const jar = new CookieJar();
  const exchanges = new Exchanges();

  async function cookieFetch(input, init = {}) {
    const headers = new Headers(init.headers);
    headers.set("origin", TRUSTED_ORIGIN);
    const cookie = jar.header();
    if (cookie !== undefined) {
      headers.set("cookie", cookie);
    }
    const response = await exchanges.send(input, init, headers);
    jar.store(response.headers.getSetCookie());
    return response;
  }

  const client = createAuthClient({
    baseURL,
    plugins: [anonymousClient(), emailOTPClient()],
    fetchOptions: { customFetchImpl: cookieFetch },
  });

  return {
    mode: "cookie",
    client,
    jar,
    exchanges,
    credentialHeaders() {
      const cookie = jar.header();
      return cookie === undefined ? {} : { cookie };
    },
  };
}

/**
 * Creates a client that keeps the `set-auth-token` response header and sends it as
 * `Authorization: Bearer`, and sends no cookies. This is the setup that
 * https://better-auth.com/docs/plugins/bearer shows.
 *
 * It sends `Origin: http://localhost:5173` like a browser app on that origin. Node's fetch (checked
 * on Node 20) adds `Sec-Fetch-Mode: cors` to every request, and with that header present Doorman,
 * like the formCsrfMiddleware of Better Auth 1.7.29, rejects a sign-in without a trusted `Origin`.
 *
 * `credentialHeaders()` returns the headers that present the current session in a plain fetch.
 */
export function createBearerClient(baseURL) {
  const exchanges = new Exchanges();
  let storedToken = null;

  async function bearerFetch(input, init = {}) {
    const headers = new Headers(init.headers);
    headers.set("origin", TRUSTED_ORIGIN);
    return exchanges.send(input, init, headers);
  }

  const client = createAuthClient({
    baseURL,
    plugins: [anonymousClient(), emailOTPClient()],
    fetchOptions: {
      customFetchImpl: bearerFetch,
      auth: { type: "Bearer", token: () => storedToken ?? undefined },
      onSuccess(context) {
        const token = context.response.headers.get("set-auth-token");
        if (token) {
          storedToken = token;
        }
      },
    },
  });

  return {
    mode: "bearer",
    client,
    exchanges,
    token: () => storedToken,
    credentialHeaders() {
      return storedToken === null ? {} : { authorization: `Bearer ${storedToken}` };
    },
  };
}
