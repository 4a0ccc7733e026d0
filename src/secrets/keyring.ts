// The Keyring holds the master keys that seal connection strings. Several keys
// may be loaded so keys can rotate: the first (newest) seals, every key opens.
import { createHash } from "node:crypto";

export const KEY_BYTES = 32;

export interface MasterKey {
  /** Derived from the key itself, so envelopes name their key without a registry of names. */
  readonly id: string;
  readonly material: Buffer;
}

export class Keyring {
  private readonly byId: ReadonlyMap<string, MasterKey>;

  constructor(readonly keys: readonly MasterKey[]) {
    if (keys.length === 0) throw new Error("a keyring needs at least one key");
    this.byId = new Map(keys.map((key) => [key.id, key]));
  }

  /** The key that seals new values. */
  get current(): MasterKey {
    return this.keys[0]!;
  }

  find(id: string): MasterKey | undefined {
    return this.byId.get(id);
  }

  /** Parses base64 keys, newest first; the error names no key material. */
  static fromBase64(encoded: readonly string[]): Keyring {
    return new Keyring(encoded.map((text, index) => masterKey(decodeKey(text, index))));
  }
}

export function masterKey(material: Buffer): MasterKey {
  if (material.length !== KEY_BYTES) throw new Error(`a master key must be ${KEY_BYTES} bytes`);
  const id = createHash("sha256").update("sota-db key id\0").update(material).digest("hex").slice(0, 16);
  return { id, material };
}

function decodeKey(text: string, index: number): Buffer {
  const trimmed = text.trim();
  const material = Buffer.from(trimmed, "base64");
  // Buffer.from silently skips bad characters; re-encoding catches that.
  if (material.length !== KEY_BYTES || material.toString("base64").replace(/=+$/, "") !== trimmed.replace(/=+$/, "")) {
    throw new Error(`master key #${index + 1} is not ${KEY_BYTES} bytes of base64`);
  }
  return material;
}
