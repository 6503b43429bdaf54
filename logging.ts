/**
 * Structured logs: one JSON object per line on stdout, with the request's
 * correlation_id on every line logged while handling it (LogTape implicit
 * context). Secrets and signatures are never passed to a logger.
 */
import {
  configure,
  getLogger,
  type Logger,
  type LogLevel as LogTapeLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { AsyncLocalStorage } from "node:async_hooks";
import type { LogLevel } from "./core/config.ts";

export { withContext } from "@logtape/logtape";

const encoder = new TextEncoder();

function stdoutLine(line: string): void {
  const bytes = encoder.encode(line);
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

export interface LoggingOptions {
  level: LogLevel;
  /** Where formatted lines go; stdout by default (tests capture them). */
  write?: (line: string) => void;
}

export async function setupLogging(options: LoggingOptions): Promise<void> {
  const write = options.write ?? stdoutLine;
  const sink: Sink = (record) => write(formatRecord(record));
  await configure({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: ["optionstrat"], lowestLevel: options.level as LogTapeLevel, sinks: ["out"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
    contextLocalStorage: new AsyncLocalStorage(),
  });
}

/**
 * One JSON object per line: time, level, the message with its values in
 * plain text, the logger, then every property (correlation_id included).
 */
export function formatRecord(record: LogRecord): string {
  const message = record.message
    .map((part, i) => i % 2 === 0 || typeof part === "string" ? String(part) : toJson(part))
    .join("");
  return `${
    toJson({
      "@timestamp": new Date(record.timestamp).toISOString(),
      level: record.level.toUpperCase(),
      message,
      logger: record.category.join("."),
      ...record.properties,
    })
  }\n`;
}

function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Error) return { name: v.name, message: v.message };
    return v;
  }) ?? String(value);
}

export function logger(...category: string[]): Logger {
  return getLogger(["optionstrat", ...category]);
}
