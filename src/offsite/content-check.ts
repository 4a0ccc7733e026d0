// The plaintext's fingerprint: sha256 and size, computed on the way through,
// and checked against what was recorded when one is expected. Used both ways:
// a local file must still be the bytes the backup recorded before it is
// copied, and a downloaded object must decrypt to exactly those bytes.
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

export interface Fingerprint {
  readonly sha256: string;
  readonly sizeBytes: number;
}

export class ContentCheck extends Transform {
  private readonly hash = createHash("sha256");
  private size = 0;
  private result: Fingerprint | undefined;

  /** `mismatch` builds the error the stream ends with when the bytes are not the expected ones. */
  constructor(
    private readonly expected: Fingerprint | undefined,
    private readonly mismatch: (actual: Fingerprint) => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const actual = { sha256: this.hash.digest("hex"), sizeBytes: this.size };
    this.result = actual;
    if (this.expected && (actual.sha256 !== this.expected.sha256 || actual.sizeBytes !== this.expected.sizeBytes)) {
      callback(this.mismatch(actual));
      return;
    }
    callback();
  }

  /** The fingerprint of everything that went through; only once the stream has ended. */
  get fingerprint(): Fingerprint {
    if (!this.result) throw new Error("the content check has not seen the end of the stream");
    return this.result;
  }
}
