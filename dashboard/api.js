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

/** A token as pasted: trimmed, without the "Authorization: Bearer " of a copied header. */
export function normalizeToken(value) {
  return String(value ?? "").trim().replace(/^(authorization:\s*)?bearer\s+/i, "").trim();
}

/** RFC 6750's token68: all a Bearer header carries, and all the server takes as a token. */
const TOKEN68 = /^[A-Za-z0-9._~+/-]+=*$/;

/**
 * Headers for an authenticated request (none when no token is known). Throws
 * UnauthorizedError for a token that cannot be sent: the server would answer
 * 400, or fetch would throw building the header (a smart quote is not Latin-1),
 * and either way the page would retry forever instead of asking again.
 */
export function authHeaders() {
  const t = token.get() || memory;
  if (!t) return {};
  if (!TOKEN68.test(t)) throw new UnauthorizedError("That token cannot be an operator token");
  return { authorization: `Bearer ${t}` };
}

/**
 * The server refused the token: 401, or 400 for an Authorization header it
 * cannot read (its WWW-Authenticate says `invalid_request`; other 400s are
 * about the request, not the token).
 */
export function authRefused(res) {
  return res.status === 401 ||
    (res.status === 400 && /invalid_request/.test(res.headers.get("www-authenticate") ?? ""));
}

/** The token is missing, refused or cannot be sent. */
export class UnauthorizedError extends Error {
  constructor(message) {
    super(message);
    this.name = "UnauthorizedError";
  }
}

/** GET `path` as JSON. Throws UnauthorizedError when the token is refused, Error when not ok. */
export async function getJson(path, { auth = true, signal } = {}) {
  const res = await fetch(path, {
    headers: { accept: "application/json", ...(auth ? authHeaders() : {}) },
    cache: "no-store",
    signal,
  });
  if (authRefused(res)) {
    const body = await res.json().catch(() => null);
    throw new UnauthorizedError(body?.error?.message ?? "Operator token required");
  }
  // /health answers 503 with its usual body when the database is down: still worth showing.
  if (!res.ok && !(res.status === 503 && path.startsWith("/health"))) {
    // The service's own words when it gave them (QUERY_TIMEOUT says to narrow the query).
    const body = await res.json().catch(() => null);
    const why = body?.error?.code ? ` ${body.error.code}: ${body.error.message}` : "";
    throw new Error(`GET ${path}: HTTP ${res.status}${why}`);
  }
  return await res.json();
}
