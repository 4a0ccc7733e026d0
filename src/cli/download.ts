// `backups download`: the plain-HTTP download route, streamed to FILE.part and
// renamed only once the byte count and the server's X-Checksum-Sha256 match
// what was written, so a finished FILE is always a whole, checked backup.
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { baseUrl, bearerToken, type ApiOptions } from "./api.js";
import { progressBar, type Progress } from "./progress-bar.js";

export interface DownloadResult {
  readonly file: string;
  readonly sizeBytes: number;
  readonly sha256: string;
}

export async function downloadBackup(
  api: ApiOptions,
  projectId: string,
  backupId: string,
  file: string | undefined,
  stderr: NodeJS.WriteStream,
): Promise<DownloadResult> {
  const path = `/v1/projects/${encodeURIComponent(projectId)}/database/backups/${encodeURIComponent(backupId)}/download`;
  const response = await fetch(`${baseUrl(api)}${path}`, { headers: { authorization: `Bearer ${bearerToken(api)}` } });
  if (!response.ok || !response.body) throw await httpError(response);
  const expectedSha = response.headers.get("x-checksum-sha256")?.toLowerCase() ?? "";
  const expectedSize = Number(response.headers.get("content-length") ?? NaN);
  const target = file ?? attachmentName(response.headers.get("content-disposition")) ?? `${backupId}.sql.gz`;
  const partial = `${target}.part`;
  const hash = createHash("sha256");
  const progress: Progress = progressBar(stderr, Number.isFinite(expectedSize) ? expectedSize : undefined);
  let written = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      written += chunk.length;
      progress.update(written);
      done(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as import("node:stream/web").ReadableStream), tap, createWriteStream(partial, { mode: 0o600 }));
  } catch (error) {
    progress.stop();
    await rm(partial, { force: true });
    throw new ConnectError(`download cut short after ${written} bytes: ${(error as Error).message}`, Code.Unavailable);
  }
  progress.stop();
  const sha256 = hash.digest("hex");
  if (Number.isFinite(expectedSize) && written !== expectedSize) {
    await rm(partial, { force: true });
    throw new ConnectError(`download cut short: ${written} of ${expectedSize} bytes`, Code.DataLoss);
  }
  if (expectedSha && sha256 !== expectedSha) {
    await rm(partial, { force: true });
    throw new ConnectError(`checksum mismatch: the server announced sha256 ${expectedSha}, the file has ${sha256}`, Code.DataLoss);
  }
  await rename(partial, target);
  return { file: target, sizeBytes: written, sha256 };
}

/** The route answers errors as Connect JSON {code, message}; anything else keeps its HTTP status. */
async function httpError(response: Response): Promise<ConnectError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { code?: string; message?: string };
    if (typeof body.code === "string") return new ConnectError(body.message ?? "", codeFromString(body.code) ?? Code.Unknown);
  } catch {
    // Not JSON: a proxy's page, say.
  }
  return new ConnectError(`HTTP ${response.status} ${response.statusText}`, Code.Unknown);
}

/** The server's suggested file name, kept only when it is a plain name (no path). */
function attachmentName(disposition: string | null): string | undefined {
  const name = disposition ? /filename="([^"]+)"/.exec(disposition)?.[1] : undefined;
  return name && /^[A-Za-z0-9._-]+$/.test(name) && !name.startsWith(".") ? name : undefined;
}
