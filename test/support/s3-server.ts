// Starts and stops a real S3-compatible server (s3rver) on 127.0.0.1 for the
// off-host copy tests, in a child process of its own (so its memory is not
// ours, and stopping it is a real endpoint going away), with a bucket, keys
// of the test's choosing, and a raw client to look at (or damage) what the
// service stored.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { OffsiteConfig } from "../../src/offsite/offsite-config.js";

const CHILD = join(import.meta.dirname, "s3rver-child.cjs");

export interface S3Server {
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly port: number;
  readonly endpoint: string;
  /** The SOTA_BACKUP_S3_* variables that point the service at this server. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** The same, as the config the copier takes. */
  config(extra?: Partial<OffsiteConfig>): OffsiteConfig;
  /** Stops the server; its objects stay on disk for a restart. */
  stop(): Promise<void>;
  /** Starts it again on the same port, with the same objects. */
  restart(): Promise<void>;
  /** Stops it and removes its objects. */
  destroy(): Promise<void>;
  keys(prefix?: string): Promise<string[]>;
  read(key: string): Promise<{ bytes: Buffer; metadata: Record<string, string> }>;
  write(key: string, bytes: Buffer, metadata?: Record<string, string>): Promise<void>;
}

export async function startS3Server(options: { secretAccessKey?: string } = {}): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), "sota-s3-"));
  const bucket = "sota-test";
  const accessKeyId = `AKIA${randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = options.secretAccessKey ?? randomBytes(30).toString("base64");
  let child: ChildProcess | undefined;
  let port = 0;

  async function launch(): Promise<void> {
    const started = spawn(process.execPath, [CHILD], {
      env: { PATH: process.env["PATH"] ?? "", S3_PORT: String(port), S3_DIR: dir, S3_BUCKET: bucket, S3_ACCESS_KEY_ID: accessKeyId, S3_SECRET_ACCESS_KEY: secretAccessKey },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = started;
    let stderr = "";
    started.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: started.stdout! }).once("line", resolve);
      started.once("exit", (code) => reject(new Error(`s3rver exited (${code}): ${stderr.trim()}`)));
    });
    port = (JSON.parse(line) as { port: number }).port;
  }

  async function stop(): Promise<void> {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  }

  await launch();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });

  return {
    bucket,
    accessKeyId,
    secretAccessKey,
    port,
    endpoint,
    env: (extra = {}) => ({
      SOTA_BACKUP_S3_ENDPOINT: endpoint,
      SOTA_BACKUP_S3_BUCKET: bucket,
      SOTA_BACKUP_S3_ACCESS_KEY_ID: accessKeyId,
      SOTA_BACKUP_S3_SECRET_ACCESS_KEY: secretAccessKey,
      SOTA_BACKUP_S3_FORCE_PATH_STYLE: "true",
      ...extra,
    }),
    config: (extra = {}) => ({
      endpoint,
      bucket,
      prefix: "sota-db",
      region: "us-east-1",
      accessKeyId,
      secretAccessKey,
      forcePathStyle: true,
      syncIntervalMs: 60_000,
      ...extra,
    }),
    stop,
    restart: launch,
    async destroy() {
      client.destroy();
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
    async keys(prefix = "") {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const object of page.Contents ?? []) keys.push(object.Key!);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    async read(key) {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return { bytes: Buffer.from(await response.Body!.transformToByteArray()), metadata: response.Metadata ?? {} };
    },
    async write(key, bytes, metadata = {}) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, Metadata: metadata }));
    },
  };
}
