/** processing_errors: what was refused at the door or failed in the pipeline. */
import type { Queryable } from "./port.ts";

export interface ProcessingError {
  signalId?: string | null;
  correlationId?: string | null;
  stage: string;
  code: string;
  message: string;
  httpStatus?: number | null;
  clientIp?: string | null;
  /** Already sanitized: secret removed, truncated. */
  payload?: string | null;
  details?: Record<string, unknown>;
}

export async function insertProcessingError(db: Queryable, e: ProcessingError): Promise<void> {
  await db.query(
    `insert into processing_errors
       (signal_id, correlation_id, stage, code, message, http_status, client_ip, payload, details)
     values ($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::integer, $7::text, $8::text,
       $9::text::jsonb)`,
    [
      e.signalId ?? null,
      e.correlationId ?? null,
      e.stage,
      e.code,
      e.message,
      e.httpStatus ?? null,
      e.clientIp ?? null,
      e.payload ?? null,
      JSON.stringify(e.details ?? {}),
    ],
  );
}
