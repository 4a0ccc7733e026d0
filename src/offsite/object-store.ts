// The bucket, through the official AWS SDK for JavaScript v3: streamed
// multipart uploads (lib-storage's Upload holds at most queueSize parts of
// partSize bytes in memory, whatever the object's size), streamed downloads,
// listing and batch deletes. Errors leave here as OffsiteStorageError with a
// message of our own making: the operation, the key, and the service's error
// name and message, with the access keys scrubbed out.
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  NoSuchKey,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { Readable } from "node:stream";
import { DomainError } from "../errors.js";
import type { OffsiteConfig } from "./offsite-config.js";

/** Metadata kept beside each object (x-amz-meta-*): lowercase keys, ASCII values. */
export type ObjectMetadata = Readonly<Record<string, string>>;

export interface ObjectStore {
  /** Stores the stream under `key`; nothing is left under the key (or as parts) when the stream or the upload fails. */
  put(key: string, body: Readable, metadata: ObjectMetadata, signal?: AbortSignal): Promise<void>;
  /** Rejects with DomainError not_found when there is no such object. */
  get(key: string): Promise<{ readonly body: Readable; readonly metadata: ObjectMetadata }>;
  /** The object's metadata and when it was stored, without its body; DomainError not_found when there is none. */
  head(key: string): Promise<{ readonly metadata: ObjectMetadata; readonly lastModified: Date | undefined }>;
  /** Every key under the prefix, in key order. */
  list(prefix: string): Promise<string[]>;
  /** The "folders" right under the prefix (keys cut after the next "/", with it), in key order. */
  children(prefix: string): Promise<string[]>;
  /** Deletes the keys (missing ones are no error). */
  delete(keys: readonly string[]): Promise<void>;
}

/** The bucket could not be reached, refused the request, or answered an error. */
export class OffsiteStorageError extends Error {
  override readonly name = "OffsiteStorageError";
}

export interface S3ObjectStoreOptions {
  /** Bytes of one multipart part (lib-storage's minimum: 5 MiB). */
  readonly partSize?: number;
  /** Parts uploaded at once; memory held is about partSize × queueSize. */
  readonly queueSize?: number;
}

const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
const DELETE_BATCH = 1000;

export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly scrub: (text: string) => string;

  constructor(
    config: OffsiteConfig,
    private readonly options: S3ObjectStoreOptions = {},
  ) {
    this.bucket = config.bucket;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
      // Checksums only where S3 requires them: the default (CRC32 on every
      // upload, sent as an aws-chunked trailer for streams) is refused by many
      // S3-compatible servers, and each object carries its own integrity
      // (sha256 of the plaintext, GCM tags) anyway.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
    });
    const secrets = [config.secretAccessKey, config.accessKeyId].filter((value) => value.length >= 4);
    this.scrub = (text) => secrets.reduce((scrubbed, secret) => scrubbed.split(secret).join("[redacted]"), text);
  }

  async put(key: string, body: Readable, metadata: ObjectMetadata, signal?: AbortSignal): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body, Metadata: { ...metadata }, ContentType: "application/octet-stream" },
      partSize: this.options.partSize ?? DEFAULT_PART_BYTES,
      queueSize: this.options.queueSize ?? 2,
      // A failed multipart upload is aborted: no orphan parts to pay for.
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort().catch(() => undefined);
    signal?.addEventListener("abort", abort, { once: true });
    try {
      await upload.done();
    } catch (error) {
      body.destroy();
      // The body's own error (a local file changed, the source failed) is ours and says more than the upload's.
      throw body.errored ?? this.failure("upload", key, error);
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  async get(key: string): Promise<{ body: Readable; metadata: ObjectMetadata }> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!(response.Body instanceof Readable)) throw new OffsiteStorageError(`download ${key}: the response has no body`);
      return { body: response.Body, metadata: response.Metadata ?? {} };
    } catch (error) {
      if (error instanceof NoSuchKey || (error instanceof S3ServiceException && error.name === "NoSuchKey")) {
        throw new DomainError("not_found", `off-host copy ${key} is not in the bucket`);
      }
      throw this.failure("download", key, error);
    }
  }

  async head(key: string): Promise<{ metadata: ObjectMetadata; lastModified: Date | undefined }> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { metadata: response.Metadata ?? {}, lastModified: response.LastModified };
    } catch (error) {
      if (error instanceof S3ServiceException && (error.name === "NotFound" || error.name === "NoSuchKey" || error.$metadata.httpStatusCode === 404)) {
        throw new DomainError("not_found", `off-host copy ${key} is not in the bucket`);
      }
      throw this.failure("head", key, error);
    }
  }

  async children(prefix: string): Promise<string[]> {
    return this.listPages(prefix, "/", (page) => (page.CommonPrefixes ?? []).map((common) => common.Prefix));
  }

  async list(prefix: string): Promise<string[]> {
    return this.listPages(prefix, undefined, (page) => (page.Contents ?? []).map((object) => object.Key));
  }

  /** Every page of a listing, `take` picking what each holds, sorted. */
  private async listPages(prefix: string, delimiter: string | undefined, take: (page: ListObjectsV2CommandOutput) => (string | undefined)[]): Promise<string[]> {
    const found: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: delimiter, ContinuationToken: token }));
        for (const item of take(page)) if (item) found.push(item);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw this.failure("list", prefix, error);
    }
    return found.sort();
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let start = 0; start < keys.length; start += DELETE_BATCH) {
      const batch = keys.slice(start, start + DELETE_BATCH);
      let errors: { Key?: string; Code?: string }[] | undefined;
      try {
        const response = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((key) => ({ Key: key })), Quiet: true } }),
        );
        errors = response.Errors;
      } catch (error) {
        throw this.failure("delete", batch[0]!, error);
      }
      const failed = (errors ?? []).filter((error) => error.Code !== "NoSuchKey");
      if (failed.length > 0) throw new OffsiteStorageError(`delete ${failed[0]!.Key}: ${failed[0]!.Code ?? "refused"} (and ${failed.length - 1} more)`);
    }
  }

  private failure(operation: string, key: string, error: unknown): OffsiteStorageError {
    const name = error instanceof Error ? error.name : "Error";
    const message = error instanceof Error ? error.message : String(error);
    const status = error instanceof S3ServiceException ? ` (HTTP ${error.$metadata.httpStatusCode ?? "?"})` : "";
    return new OffsiteStorageError(this.scrub(`${operation} ${key}: ${name}${status}: ${message || "no message"}`));
  }

  close(): void {
    this.client.destroy();
  }
}
