// Runtime.dump returns a stream, not a promise: a dump that cannot begin
// (closed runtime, bad target, missing database) fails through the stream.
import { PassThrough, type Readable } from "node:stream";

export function failedStream(error: unknown): Readable {
  const stream = new PassThrough();
  process.nextTick(() => stream.destroy(error instanceof Error ? error : new Error(String(error))));
  return stream;
}
