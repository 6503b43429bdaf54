/** The Hono environment shared by the app and its handlers: per-request variables. */
import type { RequestIdVariables } from "hono/request-id";

export interface AppEnv {
  Variables: RequestIdVariables & {
    /** The client's address: Fly-Client-IP on Fly, else the socket peer. */
    clientIp: string | null;
    /** A webhook's body, read within its size and time limits before the handler. */
    body: Uint8Array<ArrayBuffer>;
    /** Set by the webhook handler for the access log and metrics. */
    signalOutcome?: "accepted" | "duplicate";
    ackMs?: number;
  };
}
