// One object each way, streamed end to end: plaintext → fingerprint check →
// encryption → multipart upload; download → decryption → fingerprint check.
// Neither direction holds more than a chunk and the upload's parts in memory.
//
// Integrity has three layers: the GCM tag of every chunk (and the final-chunk
// flag), the sha256 and size of the plaintext, which travel in the object's
// metadata and are recorded in the state, and the check of a source against
// them on upload (a local file that changed since the backup recorded it is
// never copied as if it were that backup).
import { pipeline } from "node:stream";
import type { Readable } from "node:stream";
import { DomainError } from "../errors.js";
import type { Keyring } from "../secrets/keyring.js";
import { ContentCheck, type Fingerprint } from "./content-check.js";
import { ObjectDecryptor, ObjectEncryptor, unreadableObject } from "./object-cipher.js";
import type { ObjectRef } from "./object-layout.js";
import type { ObjectMetadata, ObjectStore } from "./object-store.js";

export interface TransferContext {
  readonly objects: ObjectStore;
  readonly keyring: Keyring;
}

/** Metadata every object carries: our format version and the plaintext's fingerprint. */
export const META_FORMAT = "sota-format";
export const META_SHA256 = "sota-sha256";
export const META_SIZE = "sota-size";

/**
 * Encrypts `source` (whose bytes must be `expected`) into the object `ref`.
 * Resolves with the encrypted bytes sent; rejects, leaving no object, when the
 * source fails, is not the expected bytes (DomainError data_loss), or the upload fails.
 */
export async function uploadEncrypted(
  context: TransferContext,
  ref: ObjectRef,
  source: Readable,
  expected: Fingerprint,
  metadata: ObjectMetadata = {},
  signal?: AbortSignal,
): Promise<number> {
  const check = new ContentCheck(
    expected,
    () => new DomainError("data_loss", `${ref.name}: the local bytes are not the ones recorded (changed or damaged on this host); not copied`),
  );
  const encryptor = new ObjectEncryptor(context.keyring, ref.name);
  // Errors of any stage destroy every stage; the upload sees its body fail and aborts.
  const body = pipeline(source, check, encryptor, () => undefined) as ObjectEncryptor;
  await context.objects.put(
    ref.key,
    body,
    { ...metadata, [META_FORMAT]: "1", [META_SHA256]: expected.sha256, [META_SIZE]: String(expected.sizeBytes) },
    signal,
  );
  return encryptor.bytesOut;
}

/**
 * The plaintext of `ref`, streamed: every chunk authenticated before it is
 * released, and the whole checked against `expected` (the state's record) or,
 * without one, against the object's own metadata. The stream errors with
 * DomainError data_loss, at the latest at its end, when anything differs:
 * a consumer that waits for the end (a restore) never uses a damaged copy.
 */
export async function downloadDecrypted(context: TransferContext, ref: ObjectRef, expected?: Fingerprint): Promise<Readable> {
  return (await openDecrypted(context, ref, expected)).stream;
}

/** downloadDecrypted, with the object's metadata (what a WAL copy says about the segment it was cut from). */
export async function openDecrypted(context: TransferContext, ref: ObjectRef, expected?: Fingerprint): Promise<{ readonly stream: Readable; readonly metadata: ObjectMetadata }> {
  const { body, metadata } = await context.objects.get(ref.key);
  const fingerprint = expected ?? metadataFingerprint(metadata);
  if (!fingerprint) {
    body.destroy();
    throw unreadableObject(ref.name, "it carries no checksum");
  }
  const check = new ContentCheck(fingerprint, () => unreadableObject(ref.name, "its content does not match its recorded sha256"));
  return { stream: pipeline(body, new ObjectDecryptor(context.keyring, ref.name), check, () => undefined) as ContentCheck, metadata };
}

/** The plaintext's fingerprint an object's metadata states; undefined when it states none that makes sense. */
export function metadataFingerprint(metadata: ObjectMetadata): Fingerprint | undefined {
  const sha256 = metadata[META_SHA256];
  const size = Number(metadata[META_SIZE]);
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256) || !Number.isSafeInteger(size) || size < 0) return undefined;
  return { sha256, sizeBytes: size };
}
