// Rows 6s-6t: off-host upload throughput. The same file (random bytes, as
// incompressible as a .sql.gz) goes to the same S3-compatible server (s3rver
// on 127.0.0.1, its own process) twice per round, alternating: once as a
// plain multipart upload through the same SDK and part size (the reference),
// once as the service copies a backup off-host (sha256 check, chunked
// AES-256-GCM, multipart upload). The ratio of their throughputs is what the
// service's encryption and checking cost on top of the upload itself.
import { randomBytes, createHash } from "node:crypto";
import { createReadStream, createWriteStream, mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ObjectLayout } from "../../src/offsite/object-layout.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";
import { uploadEncrypted } from "../../src/offsite/object-transfer.js";
import { Keyring, masterKey } from "../../src/secrets/keyring.js";
import { startS3Server } from "../../test/support/s3-server.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, times, type Row } from "../table.js";

const ROUNDS_BUDGET_MS = 180_000;
const PART_BYTES = 8 * 1024 * 1024;
const PROJECT = "550e8400-e29b-41d4-a716-446655440000";

export async function offsiteRows(plan: Plan): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), "sota-bench-offsite-"));
  const s3 = await startS3Server();
  const objects = new S3ObjectStore(s3.config(), { partSize: PART_BYTES, queueSize: 2 });
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
  });
  try {
    const file = join(dir, "backup.bin");
    const hash = createHash("sha256");
    async function* bytes() {
      for (let written = 0; written < plan.offsiteBytes; written += 1024 * 1024) {
        const chunk = randomBytes(1024 * 1024);
        hash.update(chunk);
        yield chunk;
      }
    }
    await pipeline(Readable.from(bytes()), createWriteStream(file));
    const expected = { sha256: hash.digest("hex"), sizeBytes: plan.offsiteBytes };
    const keyring = new Keyring([masterKey(randomBytes(32))]);
    const layout = new ObjectLayout("bench");
    const plainMs: number[] = [];
    const offsiteMs: number[] = [];
    await repeat(plan.offsiteRounds, ROUNDS_BUDGET_MS, async (round) => {
      plainMs.push(
        (
          await timed(() =>
            new Upload({ client, params: { Bucket: s3.bucket, Key: `plain/${round}`, Body: createReadStream(file) }, partSize: PART_BYTES, queueSize: 2 }).done(),
          )
        ).ms,
      );
      const ref = layout.backup(PROJECT, `20261126t000000000z-${round.toString(16).padStart(12, "0")}`, "dump");
      offsiteMs.push((await timed(() => uploadEncrypted({ objects, keyring }, ref, createReadStream(file), expected))).ms);
      await objects.delete([`plain/${round}`, ref.key]);
    });
    const plain = summarize(plainMs);
    const offsite = summarize(offsiteMs);
    const throughput = (elapsedMs: number): string => `${mb((plan.offsiteBytes / elapsedMs) * 1000)}/s`;
    return [
      {
        id: "6s",
        name: `upload of a ${mb(plan.offsiteBytes)} file to s3rver on 127.0.0.1: plain multipart upload, same SDK and part size (reference), n=${plain.n}`,
        median: ms(plain.median),
        p95: ms(plain.p95),
        ratio: `${times(1)} (${throughput(plain.median)})`,
        goal: "reference",
        met: NONE,
      },
      {
        id: "6t",
        name: `the same file as an off-host copy of a backup (sha256 check, chunked AES-256-GCM, multipart upload), n=${offsite.n}`,
        median: ms(offsite.median),
        p95: ms(offsite.p95),
        ratio: `${times(plain.median / offsite.median)} reference throughput (${throughput(offsite.median)})`,
        goal: "none set in issue 12",
        met: NONE,
      },
    ];
  } finally {
    client.destroy();
    objects.close();
    await s3.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
