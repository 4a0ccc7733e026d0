// Encryption of off-host objects, on this host, before a byte leaves it: the
// bucket's owner (or anyone who reads the bucket) sees ciphertext only.
//
// Streaming AES-256-GCM in chunks, so an object of any size is encrypted and
// decrypted with a fixed amount of memory, and every chunk is authenticated
// before its plaintext is released:
//
//   header (40 bytes): "SOTAOFF" | version 1 | master key id (8 bytes) |
//                      salt (16 random bytes) | nonce prefix (4 random bytes) |
//                      chunk size (uint32 BE, 64 KiB)
//   chunks:            ciphertext (chunk size bytes; the last one shorter, maybe empty) | GCM tag (16 bytes)
//
// - Key: HKDF-SHA256 of the master key with the object's salt, and the
//   object's name (project id and logical path) in the info: every object has
//   its own data key, and an object moved under another name or another
//   project's prefix does not decrypt.
// - Nonce: the object's random prefix | the chunk's counter (uint64 BE), so no
//   nonce repeats under a key, and chunks cannot be reordered.
// - Associated data: the whole header and a final-chunk flag. A truncated
//   object (cut at a chunk boundary) ends on a chunk that was not sealed as the
//   last, and fails; so does an object with chunks appended, and one whose
//   header was edited.
// A failure is a DomainError "data_loss": the copy exists but cannot be trusted.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { DomainError } from "../errors.js";
import type { Keyring, MasterKey } from "../secrets/keyring.js";

const MAGIC = Buffer.from("SOTAOFF", "ascii");
const VERSION = 1;
const KEY_ID_BYTES = 8;
const SALT_BYTES = 16;
const NONCE_PREFIX_BYTES = 4;
export const HEADER_BYTES = MAGIC.length + 1 + KEY_ID_BYTES + SALT_BYTES + NONCE_PREFIX_BYTES + 4;
const TAG_BYTES = 16;
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** A header may name another chunk size (a later release's choice); anything outside this range is refused. */
const MIN_CHUNK_BYTES = 1024;
const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
const HKDF_INFO = "sota-db off-host object v1\0";

/** Refused: the object is not one this service wrote, or was changed. */
export function unreadableObject(name: string, why: string): DomainError {
  return new DomainError("data_loss", `off-host copy ${name}: ${why}; refusing to use it`);
}

function dataKey(master: MasterKey, salt: Buffer, name: string): Buffer {
  return Buffer.from(hkdfSync("sha256", master.material, salt, Buffer.from(HKDF_INFO + name, "utf8"), 32));
}

function nonce(prefix: Buffer, counter: bigint): Buffer {
  const value = Buffer.alloc(12);
  prefix.copy(value, 0);
  value.writeBigUInt64BE(counter, NONCE_PREFIX_BYTES);
  return value;
}

function associatedData(header: Buffer, final: boolean): Buffer {
  return Buffer.concat([header, Buffer.of(final ? 1 : 0)]);
}

/** Bytes queued in arrival order, taken out in exact sizes without concatenating everything seen. */
class ByteQueue {
  private readonly parts: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.length += chunk.length;
  }

  take(size: number): Buffer {
    const out = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const head = this.parts[0]!;
      const used = Math.min(head.length, size - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) this.parts.shift();
      else this.parts[0] = head.subarray(used);
    }
    this.length -= size;
    return out;
  }
}

/**
 * Encrypts a stream for the object `name` (e.g. "{projectId}/backups/{id}.dump")
 * under the keyring's current master key. A chunk is held back until the next
 * byte arrives, so the last one can be sealed as the last.
 */
export class ObjectEncryptor extends Transform {
  private readonly header: Buffer;
  private readonly key: Buffer;
  private readonly noncePrefix: Buffer;
  private readonly queue = new ByteQueue();
  private counter = 0n;
  /** Ciphertext bytes produced, header included. */
  bytesOut = 0;

  constructor(keyring: Keyring, name: string, private readonly chunkBytes: number = DEFAULT_CHUNK_BYTES) {
    super();
    const master = keyring.current;
    const salt = randomBytes(SALT_BYTES);
    this.noncePrefix = randomBytes(NONCE_PREFIX_BYTES);
    const chunkSize = Buffer.alloc(4);
    chunkSize.writeUInt32BE(chunkBytes);
    this.header = Buffer.concat([MAGIC, Buffer.of(VERSION), Buffer.from(master.id, "hex"), salt, this.noncePrefix, chunkSize]);
    this.key = dataKey(master, salt, name);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.bytesOut === 0) this.output(this.header);
    this.queue.push(chunk);
    // Strictly more than a chunk: the one taken is not the last.
    while (this.queue.length > this.chunkBytes) this.seal(this.queue.take(this.chunkBytes), false);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.bytesOut === 0) this.output(this.header);
    this.seal(this.queue.take(this.queue.length), true);
    callback();
  }

  private seal(plain: Buffer, final: boolean): void {
    const cipher = createCipheriv("aes-256-gcm", this.key, nonce(this.noncePrefix, this.counter++));
    cipher.setAAD(associatedData(this.header, final));
    this.output(Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]));
  }

  private output(bytes: Buffer): void {
    this.bytesOut += bytes.length;
    this.push(bytes);
  }
}

/**
 * Decrypts what ObjectEncryptor wrote for the same `name`, with any key of the
 * keyring (rotated keys stay readable while they are configured). Releases a
 * chunk's plaintext only once its tag checked; errors with data_loss on any
 * change, truncation or extension, at the latest when the stream ends.
 */
export class ObjectDecryptor extends Transform {
  private readonly queue = new ByteQueue();
  private header: Buffer | undefined;
  private key: Buffer | undefined;
  private noncePrefix: Buffer | undefined;
  private storedChunkBytes = 0;
  private counter = 0n;

  constructor(private readonly keyring: Keyring, private readonly name: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.queue.push(chunk);
      if (!this.header) {
        if (this.queue.length < HEADER_BYTES) return callback();
        this.readHeader(this.queue.take(HEADER_BYTES));
      }
      while (this.queue.length > this.storedChunkBytes) this.open(this.queue.take(this.storedChunkBytes), false);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (!this.header) throw unreadableObject(this.name, "it is shorter than its header (truncated)");
      if (this.queue.length < TAG_BYTES) throw unreadableObject(this.name, "it ends inside a chunk (truncated)");
      this.open(this.queue.take(this.queue.length), true);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private readHeader(header: Buffer): void {
    if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw unreadableObject(this.name, "it is not an encrypted sota-db object");
    const version = header[MAGIC.length];
    if (version !== VERSION) throw unreadableObject(this.name, `it has format version ${version}, which this release cannot read`);
    let offset = MAGIC.length + 1;
    const keyId = header.subarray(offset, (offset += KEY_ID_BYTES)).toString("hex");
    const salt = header.subarray(offset, (offset += SALT_BYTES));
    const noncePrefix = header.subarray(offset, (offset += NONCE_PREFIX_BYTES));
    const chunkBytes = header.readUInt32BE(offset);
    if (chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) throw unreadableObject(this.name, "its header names an impossible chunk size");
    const master = this.keyring.find(keyId);
    if (!master) throw unreadableObject(this.name, `it was encrypted with master key ${keyId}, which is not configured`);
    this.header = header;
    this.noncePrefix = Buffer.from(noncePrefix);
    this.key = dataKey(master, salt, this.name);
    this.storedChunkBytes = chunkBytes + TAG_BYTES;
  }

  private open(stored: Buffer, final: boolean): void {
    const decipher = createDecipheriv("aes-256-gcm", this.key!, nonce(this.noncePrefix!, this.counter++));
    decipher.setAAD(associatedData(this.header!, final));
    decipher.setAuthTag(stored.subarray(stored.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(stored.subarray(0, stored.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw unreadableObject(
        this.name,
        final
          ? "its last chunk failed authentication (changed, truncated, or not this object)"
          : "a chunk failed authentication (changed, or not this object)",
      );
    }
    this.push(plain);
  }
}
