/**
 * The operator dashboard: `GET /` (the page) and `GET /dashboard/<file>` (its
 * scripts, styles and icon), read from `dashboard/` beside this project, not
 * from the working directory. Public on purpose: the files hold no data; the
 * page asks for the operator token and sends it with its own data requests.
 * - only plain names (`app.js`, `style.css`) with a known extension are
 *   served, so no path can climb out of the folder;
 * - `Cache-Control: no-cache` with an ETag: a deploy shows up on the next
 *   load, an unchanged file costs a 304;
 * - a strict Content-Security-Policy: everything from this origin, no inline
 *   script or style, no CDN, no fonts from elsewhere, no framing, and Trusted
 *   Types with no policy (so no innerHTML-style sink can take a string).
 */
import { type Context, Hono } from "hono";
import { etag } from "hono/etag";
import type { AppEnv } from "../app_env.ts";
import { ApiError } from "../core/errors.ts";

const DIR = new URL("../dashboard/", import.meta.url);

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

/** A file name and nothing else: no slash, no dot-dot, one known extension. */
const FILE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}\.(html|js|css|svg)$/;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  // No DOM sink may take a string: the page builds its DOM with text nodes only.
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

export function dashboardRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("/", etag());
  app.use("/dashboard/*", etag());
  app.get("/", (c) => serve(c, "index.html"));
  // Everything under /dashboard/ is answered here (a 404 at worst), never by the token check.
  app.get("/dashboard/*", (c) => serve(c, c.req.path.slice("/dashboard/".length)));
  return app;
}

async function serve(c: Context<AppEnv>, name: string): Promise<Response> {
  const match = FILE_NAME.exec(name);
  if (match === null) throw new ApiError("NOT_FOUND", `No dashboard file ${name.slice(0, 64)}`);
  let data: Uint8Array<ArrayBuffer>;
  try {
    data = await Deno.readFile(new URL(name, DIR));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ApiError("NOT_FOUND", `No dashboard file ${name}`);
    }
    throw error;
  }
  return c.body(data, 200, {
    "content-type": CONTENT_TYPES[match[1]],
    "cache-control": "no-cache",
    "content-security-policy": CONTENT_SECURITY_POLICY,
  });
}
