// The off-host object format: chunked AES-256-GCM under a key derived per
// object from the master key. What it must refuse matters as much as what it
// must read back: any change, truncation, extension, move to another name, or
// a key that is not configured is data_loss, never garbage.
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/errors.js";
import { HEADER_BYTES, ObjectDecryptor, ObjectEncryptor } from "../../src/offsite/object-cipher.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";

const CHUNK = 1024;
const keyring = new Keyring([masterKey(randomBytes(32))]);
const NAME = "550e8400-e29b-41d4-a716-446655440000/backups/20261126t000000000z-aaaaaaaaaaaa.dump";

async function encrypt(plain: Buffer, ring = keyring, name = NAME, pieces = 7): Promise<Buffer> {
  const parts: Buffer[] = [];
  // Odd-sized writes: chunking must not depend on how the source happens to split its bytes.
  for (let at = 0; at < plain.length; at += pieces) parts.push(plain.subarray(at, at + pieces));
  return buffer(Readable.from(parts).pipe(new ObjectEncryptor(ring, name, CHUNK)));
}

async function decrypt(stored: Buffer, ring = keyring, name = NAME): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([stored]), new ObjectDecryptor(ring, name), async function* (source) {
    for await (const chunk of source) out.push(chunk as Buffer);
  });
  return Buffer.concat(out);
}

async function refusal(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).kind).toBe("data_loss");
  return error as DomainError;
}

describe("off-host object encryption", () => {
  it("reads back every size, chunk boundaries included, and adds a header and a tag per chunk", async () => {
    for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17]) {
      const plain = randomBytes(size);
      const stored = await encrypt(plain);
      expect(stored.length, `size ${size}`).toBe(HEADER_BYTES + Math.max(1, Math.ceil(size / CHUNK)) * 16 + size);
      expect((await decrypt(stored)).equals(plain), `size ${size}`).toBe(true);
    }
  });

  it("leaves no plaintext in the object, and two encryptions of the same bytes share nothing", async () => {
    const plain = Buffer.from("INSERT INTO customers VALUES ('PLAINTEXT-MARKER-4711');\n".repeat(200));
    const first = await encrypt(plain);
    const second = await encrypt(plain);
    expect(first.includes("PLAINTEXT-MARKER-4711")).toBe(false);
    expect(first.includes(plain.subarray(0, 16))).toBe(false);
    expect(first.subarray(HEADER_BYTES, HEADER_BYTES + 64).equals(second.subarray(HEADER_BYTES, HEADER_BYTES + 64))).toBe(false);
  });

  it("refuses a flipped byte anywhere: header, a middle chunk, a tag, the last chunk", async () => {
    const stored = await encrypt(randomBytes(3 * CHUNK + 100));
    for (const at of [3, 20, HEADER_BYTES + 10, HEADER_BYTES + CHUNK + 5, HEADER_BYTES + CHUNK + 16 - 1, stored.length - 1]) {
      const damaged = Buffer.from(stored);
      damaged[at]! ^= 0x01;
      await refusal(decrypt(damaged));
    }
  });

  it("refuses an object cut short, at a chunk boundary or inside a chunk, and one with bytes appended", async () => {
    const stored = await encrypt(randomBytes(3 * CHUNK + 100));
    const chunk = CHUNK + 16;
    const atBoundary = await refusal(decrypt(stored.subarray(0, HEADER_BYTES + 2 * chunk)));
    expect(atBoundary.message).toMatch(/last chunk failed authentication/);
    await refusal(decrypt(stored.subarray(0, stored.length - 5)));
    await refusal(decrypt(stored.subarray(0, HEADER_BYTES + 8)));
    await refusal(decrypt(stored.subarray(0, HEADER_BYTES - 1)));
    await refusal(decrypt(Buffer.concat([stored, stored.subarray(HEADER_BYTES, HEADER_BYTES + chunk)])));
  });

  it("refuses chunks swapped with each other", async () => {
    const stored = await encrypt(randomBytes(3 * CHUNK + 100));
    const chunk = CHUNK + 16;
    const first = stored.subarray(HEADER_BYTES, HEADER_BYTES + chunk);
    const second = stored.subarray(HEADER_BYTES + chunk, HEADER_BYTES + 2 * chunk);
    await refusal(decrypt(Buffer.concat([stored.subarray(0, HEADER_BYTES), second, first, stored.subarray(HEADER_BYTES + 2 * chunk)])));
  });

  it("refuses an object read under another name: another project's copy moved under this one's key", async () => {
    const stored = await encrypt(Buffer.from("project A's rows"));
    const refused = await refusal(decrypt(stored, keyring, NAME.replace("550e8400", "6ba7b810")));
    expect(refused.message).not.toContain("project A's rows");
  });

  it("reads with a rotated keyring while the old key is configured, and says which key is missing otherwise", async () => {
    const old = masterKey(randomBytes(32));
    const stored = await encrypt(Buffer.from("written before the rotation"), new Keyring([old]));
    const rotated = new Keyring([masterKey(randomBytes(32)), old]);
    expect((await decrypt(stored, rotated)).toString()).toBe("written before the rotation");
    const missing = await refusal(decrypt(stored, new Keyring([masterKey(randomBytes(32))])));
    expect(missing.message).toContain(old.id);
    expect(missing.message).not.toContain(old.material.toString("base64"));
  });

  it("refuses what is not one of its objects", async () => {
    await refusal(decrypt(Buffer.from("gzip? no: \x1f\x8b plain bytes that are long enough to hold a header")));
  });
});
