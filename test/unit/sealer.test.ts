import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Keyring } from "../../src/secrets/keyring.js";
import { SealError, Sealer } from "../../src/secrets/sealer.js";

const key = () => randomBytes(32).toString("base64");
const PROJECT = "550e8400-e29b-41d4-a716-446655440000";
const OTHER = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const URL = "postgresql://app_my-app:0123456789abcdef0123456789abcdef@127.0.0.1:16432/my-app?sslmode=disable";

describe("Sealer (AES-256-GCM)", () => {
  it("opens what it sealed, and the envelope holds no plaintext", () => {
    const sealer = new Sealer(Keyring.fromBase64([key()]));
    const sealed = sealer.seal(URL, PROJECT);
    expect(sealed).toMatch(/^v1\.[0-9a-f]{16}\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain("0123456789abcdef");
    expect(sealer.open(sealed, PROJECT)).toBe(URL);
  });

  it("uses a fresh nonce for every seal", () => {
    const sealer = new Sealer(Keyring.fromBase64([key()]));
    const nonces = new Set(Array.from({ length: 50 }, () => Buffer.from(sealer.seal(URL, PROJECT).split(".")[2]!, "base64url").subarray(0, 12).toString("hex")));
    expect(nonces.size).toBe(50);
  });

  it("refuses a value sealed for another project (project id is the AAD)", () => {
    const sealer = new Sealer(Keyring.fromBase64([key()]));
    expect(() => sealer.open(sealer.seal(URL, PROJECT), OTHER)).toThrow(SealError);
  });

  it("detects tampering anywhere in the ciphertext, never returning garbage", () => {
    const sealer = new Sealer(Keyring.fromBase64([key()]));
    const sealed = sealer.seal(URL, PROJECT);
    const [version, id, body] = sealed.split(".") as [string, string, string];
    const bytes = Buffer.from(body, "base64url");
    for (const index of [0, 12, 20, bytes.length - 1]) {
      const copy = Buffer.from(bytes);
      copy[index]! ^= 0x01;
      expect(() => sealer.open(`${version}.${id}.${copy.toString("base64url")}`, PROJECT)).toThrow(SealError);
    }
    expect(() => sealer.open("v1.abc", PROJECT)).toThrow(SealError);
    expect(() => sealer.open(`${version}.${id}.${body.slice(0, 10)}`, PROJECT)).toThrow(SealError);
  });

  it("rotates keys: the newest seals, older ones still open", () => {
    const oldKey = key();
    const newKey = key();
    const before = new Sealer(Keyring.fromBase64([oldKey]));
    const sealedBefore = before.seal(URL, PROJECT);
    const after = new Sealer(Keyring.fromBase64([newKey, oldKey]));
    expect(after.open(sealedBefore, PROJECT)).toBe(URL);
    expect(after.isStale(sealedBefore)).toBe(true);
    const sealedAfter = after.seal(URL, PROJECT);
    expect(after.isStale(sealedAfter)).toBe(false);
    expect(() => before.open(sealedAfter, PROJECT)).toThrow(/not configured/);
  });

  it("rejects keys that are not 32 bytes of base64, without echoing them", () => {
    expect(() => Keyring.fromBase64(["c2hvcnQ="])).toThrow(/master key #1 is not 32 bytes/);
    const bad = `${key().slice(0, -4)}!!!!`;
    try {
      Keyring.fromBase64([bad]);
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).not.toContain(bad);
    }
  });
});
