/**
 * The dashboard's side of the read API: JSON GETs with the operator token
 * (kept in sessionStorage: this tab only, gone when it closes), and the
 * error that says "ask for the token".
 */

const TOKEN_KEY = "optionstrat.operatorToken";
/** The token when sessionStorage is unavailable (private modes, disabled storage). */
let memory = "";

export const token = {
  get() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) ?? "";
    } catch {
      return ""; // storage disabled: ask every time
    }
  },
  set(value) {
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // Storage disabled: the token lives as long as this page.
    }
    memory = value;
  },
  clear() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Nothing stored.
    }
    memory = "";
  },
};

/** Headers for an authenticated request (none when no token is known). */
export function authHeaders() {
  const t = token.get() || memory;
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** The server answered 401: the token is missing or wrong. */
export class UnauthorizedError extends Error {
  constructor(message) {
    super(message);
    this.name = "UnauthorizedError";
  }
}

/** GET `path` as JSON. Throws UnauthorizedError on 401 and Error on anything else not ok. */
export async function getJson(path, { auth = true, signal } = {}) {
  const res = await fetch(path, {
    headers: { accept: "application/json", ...(auth ? authHeaders() : {}) },
    cache: "no-store",
    signal,
  });
  if (res.status === 401) {
    const body = await res.json().catch(() => null);
    throw new UnauthorizedError(body?.error?.message ?? "Operator token required");
  }
  // /health answers 503 with its usual body when the database is down: still worth showing.
  if (!res.ok && !(res.status === 503 && path.startsWith("/health"))) {
    throw new Error(`GET ${path}: HTTP ${res.status}`);
  }
  return await res.json();
}
