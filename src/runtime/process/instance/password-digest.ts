// Keyed digests of verified passwords: ensure's fast path can tell "the same
// password as last time" without the service keeping any password.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export class PasswordDigests {
  /** Per process: a digest means nothing outside it. */
  private readonly key = randomBytes(32);

  of(password: string): Buffer {
    return createHmac("sha256", this.key).update(password).digest();
  }

  matches(digest: Buffer | undefined, password: string): boolean {
    return digest !== undefined && timingSafeEqual(digest, this.of(password));
  }
}
