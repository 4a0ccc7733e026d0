// Drops the zeros at the end of a stream, and only those. pg_receivewal writes
// the segment it is receiving into a file already padded to the full segment
// size with zeros; copying the WAL written so far is enough, and a recovery
// pads the file back (the object's metadata records the segment's size).
// Zeros inside the stream are passed on once a non-zero byte follows them;
// runs of zeros are counted, not held, so memory stays flat.
import { Transform, type TransformCallback } from "node:stream";

const ZEROS = Buffer.alloc(64 * 1024);

export class TrailingZeros extends Transform {
  /** Zero bytes seen and not passed on yet. */
  private held = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let end = chunk.length;
    while (end > 0 && chunk[end - 1] === 0) end--;
    if (end === 0) {
      this.held += chunk.length;
      return callback();
    }
    this.releaseHeld();
    this.push(chunk.subarray(0, end));
    this.held = chunk.length - end;
    callback();
  }

  private releaseHeld(): void {
    while (this.held > 0) {
      const size = Math.min(this.held, ZEROS.length);
      this.push(Buffer.from(ZEROS.subarray(0, size)));
      this.held -= size;
    }
  }
}
