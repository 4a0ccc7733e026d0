// AES-256-GCM sealing of values at rest (the DATABASE_URL and the app
// password). Envelope: "v1.{keyId}.{base64url(nonce | ciphertext | tag)}".
// The project id is the additional authenticated data, so a sealed value copied
// onto another project's record fails to open instead of leaking across.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { DomainError } from "../errors.js";
import type { Keyring } from "./keyring.js";

const VERSION = "v1";
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Opening failed: wrong key, tampering, or a value sealed for another project.
 * The secret is there but cannot be read: data loss, as far as a caller can tell.
 */
export class SealError extends DomainError {
  override readonly name = "SealError";
  constructor(message: string) {
    super("data_loss", message);
  }
}

export class Sealer {
  constructor(private readonly keyring: Keyring) {}

  seal(plaintext: string, projectId: string): string {
    const key = this.keyring.current;
    // A fresh random nonce per seal: GCM is broken by nonce reuse under one key.
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key.material, nonce);
    cipher.setAAD(Buffer.from(projectId, "utf8"));
    const body = Buffer.concat([nonce, cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return `${VERSION}.${key.id}.${body.toString("base64url")}`;
  }

  open(envelope: string, projectId: string): string {
    const [version, keyId, encoded, ...rest] = envelope.split(".");
    if (version !== VERSION || !keyId || !encoded || rest.length > 0) {
      throw new SealError("sealed value has an unknown format");
    }
    const key = this.keyring.find(keyId);
    if (!key) throw new SealError(`sealed value needs key ${keyId}, which is not configured`);
    const body = Buffer.from(encoded, "base64url");
    if (body.length < NONCE_BYTES + TAG_BYTES) throw new SealError("sealed value is truncated");
    const decipher = createDecipheriv("aes-256-gcm", key.material, body.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(projectId, "utf8"));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    try {
      const plain = Buffer.concat([decipher.update(body.subarray(NONCE_BYTES, body.length - TAG_BYTES)), decipher.final()]);
      return plain.toString("utf8");
    } catch {
      throw new SealError("sealed value failed authentication (tampered, or sealed for another project)");
    }
  }

  /** Whether the value was sealed with an older key and should be re-sealed. */
  isStale(envelope: string): boolean {
    return envelope.split(".")[1] !== this.keyring.current.id;
  }
}
