/**
 * readBytesWithin (read_body.ts), the one reader of webhook bodies and market
 * data: the size cap holds however the length is declared, and a body read
 * in time comes back byte for byte.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { BodyTooLargeError, readBytesWithin } from "../read_body.ts";

const post = (body: BodyInit, headers: Record<string, string> = {}) =>
  new Request("http://localhost/webhook", { method: "POST", body, headers });

Deno.test("readBytesWithin() returns a body within its cap byte for byte, however it is sent", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 3000 }),
      fc.integer({ min: 1, max: 700 }),
      fc.boolean(),
      async (bytes, chunkSize, streamed) => {
        const body = streamed
          ? new ReadableStream<Uint8Array>({
            start(controller) {
              for (let at = 0; at < bytes.length; at += chunkSize) {
                controller.enqueue(bytes.slice(at, at + chunkSize));
              }
              controller.close();
            },
          })
          : bytes;
        const request = streamed
          ? new Request("http://localhost/webhook", {
            method: "POST",
            body: body as ReadableStream<Uint8Array>,
            duplex: "half",
          } as RequestInit)
          : post(new Uint8Array(bytes), { "content-length": String(bytes.length) });
        const cap = 2048;
        const read = readBytesWithin(request, cap, 5_000);
        if (bytes.length > cap) {
          await assert.rejects(read, BodyTooLargeError);
        } else {
          assert.deepEqual(await read, new Uint8Array(bytes));
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("readBytesWithin() does not trust a Content-Length that Transfer-Encoding overrides", async () => {
  // HTTP says the chunked length wins; a reader that took Content-Length's word would read
  // the whole body past the cap.
  const request = post("x".repeat(4000), {
    "content-length": "10",
    "transfer-encoding": "chunked",
  });
  await assert.rejects(readBytesWithin(request, 1024, 5_000), BodyTooLargeError);
  // A declared length over the cap is refused before reading.
  await assert.rejects(
    readBytesWithin(post("x".repeat(10), { "content-length": "4000" }), 1024),
    BodyTooLargeError,
  );
});
