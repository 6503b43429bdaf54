/**
 * The errors a client can see: a stable code, the HTTP status it maps to
 * (a pure switch, like Unkey's codeToStatus) and the JSON shape every error
 * response shares: `{ status: "REJECTED", correlation_id, error: { code, message, issues? } }`.
 */
import type { Issue } from "./signal.ts";

export type ErrorCode =
  | "INVALID_JSON"
  | "VALIDATION_FAILED"
  | "UNAUTHORIZED"
  | "PAYLOAD_TOO_LARGE"
  | "RATE_LIMITED"
  | "DATABASE_UNAVAILABLE"
  | "QUERY_TIMEOUT"
  | "SHUTTING_DOWN"
  | "NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "REQUEST_TIMEOUT"
  | "BAD_REQUEST"
  | "INTERNAL_ERROR";

export function codeToStatus(code: ErrorCode) {
  switch (code) {
    case "INVALID_JSON":
    case "BAD_REQUEST":
      return 400;
    case "UNAUTHORIZED":
      return 401;
    case "NOT_FOUND":
      return 404;
    case "METHOD_NOT_ALLOWED":
      return 405;
    case "REQUEST_TIMEOUT":
      return 408;
    case "PAYLOAD_TOO_LARGE":
      return 413;
    case "VALIDATION_FAILED":
      return 422;
    case "RATE_LIMITED":
      return 429;
    case "DATABASE_UNAVAILABLE":
    case "QUERY_TIMEOUT":
    case "SHUTTING_DOWN":
      return 503;
    case "INTERNAL_ERROR":
      return 500;
  }
}

/** An expected refusal; `app.onError` turns it into the JSON error response. */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: { issues?: Issue[]; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface ErrorBody {
  status: "REJECTED";
  correlation_id: string;
  error: { code: ErrorCode; message: string; issues?: Issue[] };
}

export function errorBody(error: ApiError, correlationId: string): ErrorBody {
  return {
    status: "REJECTED",
    correlation_id: correlationId,
    error: {
      code: error.code,
      message: error.message,
      ...(error.extra.issues ? { issues: error.extra.issues } : {}),
    },
  };
}
