// Reading a project back from the bucket, on a host that may have nothing
// else (disaster recovery): its manifest, a backup file fetched back whole,
// the WAL of a generation streamed into a recovery, and the records of the
// WAL objects, so this host's retention and manifest carry on where the lost
// host's stopped.
//
// Everything read is decrypted under its own name (an object moved from
// another key, another project's included, does not decrypt) and checked
// against its sha256: damage is data_loss, never used. The bucket not
// answering is unavailable, its detail in the log only.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { pipeline, Transform, type Readable, type TransformCallback } from "node:stream";
import { DomainError } from "../errors.js";
import type { Logger } from "../log.js";
import type { WalSource } from "../runtime/runtime.js";
import type { Keyring } from "../secrets/keyring.js";
import type { OffsiteWalRecord } from "../store/records.js";
import { saveWhole } from "./local-copy.js";
import { readManifest, type ManifestBackup, type ProjectManifest } from "./manifest.js";
import { unreadableObject } from "./object-cipher.js";
import { isWalFileName, ObjectLayout, PARTIAL_SUFFIX } from "./object-layout.js";
import { OffsiteStorageError, type ObjectStore } from "./object-store.js";
import { downloadDecrypted, metadataFingerprint, openDecrypted, type TransferContext } from "./object-transfer.js";
import type { OffsiteMetrics } from "./offsite-metrics.js";

export interface OffsiteRecoveryOptions {
  readonly objects: ObjectStore;
  readonly prefix: string;
  readonly keyring: Keyring;
  /** Private scratch space on the backup directory's file system. */
  readonly tempDir: string;
  readonly metrics: OffsiteMetrics;
  readonly logger: Logger;
}

/** HEAD requests at once while the WAL objects are recorded. */
const LOOKUPS_AT_ONCE = 4;
/** What pg_receivewal's segments may be (wal_segment_size: a power of two from 1 MiB to 1 GiB). */
const SEGMENT_BYTES = /^(?:1048576|2097152|4194304|8388608|16777216|33554432|67108864|134217728|268435456|536870912|1073741824)$/;

export class OffsiteRecovery {
  private readonly layout: ObjectLayout;
  private readonly transfer: TransferContext;

  constructor(private readonly options: OffsiteRecoveryOptions) {
    this.layout = new ObjectLayout(options.prefix);
    this.transfer = { objects: options.objects, keyring: options.keyring };
  }

  /** The project's manifest; undefined when the bucket holds none. */
  async manifest(projectId: string): Promise<ProjectManifest | undefined> {
    try {
      return await readManifest(this.transfer, this.layout, projectId);
    } catch (error) {
      if (error instanceof DomainError && error.kind === "not_found") return undefined;
      throw this.failure(error, { projectId }, `the bucket did not answer when asked for project ${projectId}`);
    }
  }

  /** Writes the backup's plaintext to `path`, whole and checked against the manifest's sha256 and size, or nothing. */
  async fetchBackup(projectId: string, backup: ManifestBackup, path: string): Promise<void> {
    const ref = this.layout.backup(projectId, backup.id, backup.format);
    try {
      const source = await downloadDecrypted(this.transfer, ref, { sha256: backup.sha256, sizeBytes: backup.sizeBytes });
      await saveWhole(source, await this.tempFile(), path);
    } catch (error) {
      throw this.failure(error, { projectId, backupId: backup.id }, `backup ${backup.id} could not be read from object storage`);
    }
  }

  /**
   * The WAL of one generation as the bucket holds it, for a recovery: the
   * complete segments and history files, and the segment that was being
   * written (its last copy) padded back to its full size.
   */
  walSource(projectId: string, generation: string): WalSource {
    const prefix = this.layout.walPrefix(projectId, generation);
    let listed: Map<string, boolean> | undefined;
    const files = async (): Promise<Map<string, boolean>> => {
      if (listed) return listed;
      const keys = await this.options.objects.list(prefix).catch((error: unknown) => {
        throw this.failure(error, { projectId, generation }, `the WAL of generation ${generation} could not be listed in object storage`);
      });
      listed = new Map();
      for (const key of keys) {
        const file = key.slice(prefix.length);
        if (!isWalFileName(file)) continue;
        const partial = file.endsWith(PARTIAL_SUFFIX);
        const name = partial ? file.slice(0, -PARTIAL_SUFFIX.length) : file;
        // A segment copied whole after its partial copy (whose deletion a crash may have missed): the whole one.
        listed.set(name, (listed.get(name) ?? false) || !partial);
      }
      return listed;
    };
    return {
      files: async () => [...(await files())].map(([name, complete]) => ({ name, complete })),
      open: async (name: string): Promise<Readable> => {
        const complete = (await files()).get(name);
        if (complete === undefined) throw new DomainError("not_found", `WAL file ${name} of generation ${generation} is not in the bucket`);
        const ref = this.layout.wal(projectId, generation, complete ? name : `${name}${PARTIAL_SUFFIX}`);
        try {
          const { stream, metadata } = await openDecrypted(this.transfer, ref);
          if (complete) return stream;
          const size = metadata["sota-segment-bytes"] ?? "";
          if (!SEGMENT_BYTES.test(size)) {
            stream.destroy();
            throw unreadableObject(ref.name, "it does not say the size of the segment it was cut from");
          }
          // pipeline, not pipe: the decryption's refusal must fail what the recovery reads.
          return pipeline(stream, new PadWithZeros(Number(size), ref.name), () => undefined) as PadWithZeros;
        } catch (error) {
          throw this.failure(error, { projectId, generation, file: name }, `WAL file ${name} could not be read from object storage`);
        }
      },
    };
  }

  /** Every WAL object the bucket holds for the project, as this host records the ones it copied. */
  async walObjects(projectId: string): Promise<OffsiteWalRecord[]> {
    const prefix = `${this.layout.projectPrefix(projectId)}wal/`;
    const keys = await this.options.objects.list(prefix).catch((error: unknown) => {
      throw this.failure(error, { projectId }, `the WAL of project ${projectId} could not be listed in object storage`);
    });
    const found: { generation: string; file: string; key: string }[] = [];
    for (const key of keys) {
      const [generation, file, ...rest] = key.slice(prefix.length).split("/");
      if (!generation || !file || rest.length > 0) continue;
      try {
        if (this.layout.wal(projectId, generation, file).key === key) found.push({ generation, file, key });
      } catch {
        // Not a name this service writes: left alone.
      }
    }
    const records: OffsiteWalRecord[] = [];
    let next = 0;
    const lookUp = async (): Promise<void> => {
      for (let item = found[next++]; item !== undefined; item = found[next++]) {
        const { metadata, lastModified } = await this.options.objects.head(item.key).catch((error: unknown) => {
          throw this.failure(error, { projectId }, `WAL object ${item.generation}/${item.file} could not be looked at in object storage`);
        });
        const fingerprint = metadataFingerprint(metadata);
        if (fingerprint) records.push({ projectId, generation: item.generation, file: item.file, ...fingerprint, copiedAt: lastModified ?? new Date() });
      }
    };
    await Promise.all(Array.from({ length: LOOKUPS_AT_ONCE }, lookUp));
    return records;
  }

  /** A refusal (data_loss, not_found) as it is; the bucket out of reach as unavailable, its detail in the log only. */
  private failure(error: unknown, log: Record<string, string>, what: string): DomainError {
    if (error instanceof DomainError) return error;
    this.options.metrics.failures.inc({ kind: "download" });
    const detail = error instanceof OffsiteStorageError ? error.message : error instanceof Error ? `${error.name}: ${(error as NodeJS.ErrnoException).code ?? "error"}` : "error";
    this.options.logger.error({ ...log, err: { message: detail } }, "reading from object storage failed");
    return new DomainError("unavailable", `${what}; try again later`);
  }

  private async tempFile(): Promise<string> {
    await mkdir(this.options.tempDir, { recursive: true, mode: 0o700 });
    return join(this.options.tempDir, `${randomBytes(8).toString("hex")}.tmp`);
  }
}

/**
 * The project ids whose manifest the bucket holds: listing needs the bucket's
 * credentials only, not the master key. A project's folder without a manifest
 * (the rest of a project being forgotten) is left out: recovering it would
 * make an empty database.
 */
export async function projectsInBucket(objects: ObjectStore, prefix: string): Promise<string[]> {
  const folders = await objects.children(`${prefix}/`);
  const projects: string[] = [];
  for (const folder of folders) {
    const projectId = folder.slice(prefix.length + 1, -1);
    if (await hasManifest(objects, prefix, projectId)) projects.push(projectId);
  }
  return projects;
}

/** Whether the bucket holds the project's manifest (false for anything that is not a project id). */
export async function hasManifest(objects: ObjectStore, prefix: string, projectId: string): Promise<boolean> {
  let key: string;
  try {
    key = new ObjectLayout(prefix).manifest(projectId).key;
  } catch {
    return false;
  }
  return (await objects.list(key)).includes(key);
}

/** A partial segment's copy back to its segment's size: the zeros pg_receivewal had preallocated. */
class PadWithZeros extends Transform {
  private seen = 0;

  constructor(
    private readonly size: number,
    private readonly name: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.size) return callback(unreadableObject(this.name, "it is longer than the segment it was cut from"));
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    // One block of zeros, pushed as often as needed: every push shares its memory.
    const zeros = Buffer.alloc(64 * 1024);
    for (let left = this.size - this.seen; left > 0; left -= zeros.length) this.push(left >= zeros.length ? zeros : zeros.subarray(0, left));
    callback();
  }
}
