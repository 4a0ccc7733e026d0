// Disaster recovery tests: what an operator keeps off the host (the master
// key file and the tokens file, here in a directory of their own, and the
// bucket), and hosts that come and go around them: each starts the whole
// service in-process on a data dir of its own, and is destroyed with its
// data dir (rm -rf, once none of its processes is left).
import { randomBytes, randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keyring } from "../../src/secrets/keyring.js";
import { harnessOn, testTokens, writeTokensFile, type Harness } from "./app-harness.js";
import { removeDataDir } from "./data-dir-cleanup.js";
import { eventually, rest } from "./pitr-api.js";
import { poolerPortsSetting } from "./process-runtime-harness.js";
import { startS3Server, type S3Server } from "./s3-server.js";
import { DomainError } from "../../src/errors.js";
import { readManifest, type ProjectManifest } from "../../src/offsite/manifest.js";
import { ObjectLayout } from "../../src/offsite/object-layout.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";

/** What survives the host: kept elsewhere by the operator. */
export interface OffHost {
  readonly dir: string;
  readonly masterKeyFile: string;
  readonly tokensFile: string;
  readonly tokens: Harness["tokens"];
  readonly keyring: Keyring;
  /** SOTA_* the service needs besides a data dir: the secrets above, the bucket, the port range. */
  readonly env: Record<string, string>;
  /** The projects the tokens file binds the project tokens to. */
  readonly projectId: string;
  readonly otherProjectId: string;
  remove(): void;
}

export function offHostSecrets(env: Record<string, string>): OffHost {
  const dir = mkdtempSync(join(tmpdir(), "sota-offhost-"));
  const key = randomBytes(32).toString("base64");
  const masterKeyFile = join(dir, "master.key");
  writeFileSync(masterKeyFile, `${key}\n`, { mode: 0o600 });
  const tokens = testTokens();
  const tokensFile = join(dir, "tokens.json");
  const projects = { projectId: randomUUID(), otherProjectId: randomUUID() };
  writeTokensFile(tokensFile, tokens, projects.projectId, projects.otherProjectId);
  return {
    dir,
    masterKeyFile,
    tokensFile,
    tokens,
    keyring: Keyring.fromBase64([key]),
    ...projects,
    env: { SOTA_MASTER_KEY_FILE: masterKeyFile, SOTA_TOKENS_FILE: tokensFile, SOTA_LISTEN: "127.0.0.1:0", SOTA_LOG_LEVEL: "debug", ...env },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A new host: an empty data dir, the off-host secrets and bucket, the service started on it. */
export async function startHost(offHost: OffHost, extraEnv: Record<string, string> = {}): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), "sota-dr-host-"));
  // postgres and pgbouncer run as unprivileged users when we are root: they must reach the dir.
  chmodSync(dataDir, 0o755);
  const env = { ...offHost.env, SOTA_DATA_DIR: dataDir, ...extraEnv };
  const host = harnessOn({ dataDir, tokens: offHost.tokens, projectId: offHost.projectId, otherProjectId: offHost.otherProjectId, env });
  await host.start();
  return host;
}

/**
 * The host is lost: the service stops, and its WHOLE data dir is deleted
 * (instances, WAL archives, backups, the state). Throws if a process of the
 * data dir outlived the service, or anything of the dir is left.
 */
export async function loseHost(host: Harness): Promise<void> {
  await host.app.close();
  const survivors = processesUnder(host.dataDir);
  if (survivors.length > 0) throw new Error(`processes of ${host.dataDir} outlived the service: ${survivors.join(", ")}`);
  await removeDataDir(host.dataDir);
  if (existsSync(host.dataDir)) throw new Error(`${host.dataDir} is still there`);
}

/** Pids whose command line names the directory (postgres -D, pgbouncer's config, pg_receivewal -D). */
export function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir)) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** A test file's bucket, off-host secrets and hosts; close() stops and removes all of them. */
export interface DrBed {
  readonly s3: S3Server;
  readonly offHost: OffHost;
  readonly prefix: string;
  /** A new host on an empty data dir (SOTA_* of the bed, then `extraEnv`). */
  host(extraEnv?: Record<string, string>): Promise<Harness>;
  /** loseHost(), and the bed forgets it. */
  lose(host: Harness): Promise<void>;
  /** The project's manifest as the bucket holds it now (undefined: none yet). */
  manifest(projectId: string): Promise<ProjectManifest | undefined>;
  /**
   * Waits until the project's base backup is copied off-host and named by
   * its manifest (written at the end of a pass, after the copies), and its
   * WAL up to now is copied: flushWal returns once the receiver has
   * everything committed before the call on disk, and a WAL copy read after
   * that holds it.
   */
  untilCopied(host: Harness, project: { readonly projectId: string; readonly slug: string }): Promise<void>;
  /** Waits until the project's manifest names every one of `backupIds`. */
  untilInManifest(projectId: string, backupIds: readonly string[]): Promise<ProjectManifest>;
  close(): Promise<void>;
}

/** Copies every second under `prefix`, pooler ports from the file's own range (`portOffset`). */
export async function startDrBed(prefix: string, portOffset: number): Promise<DrBed> {
  const s3 = await startS3Server();
  const offHost = offHostSecrets({
    ...s3.env({ SOTA_BACKUP_S3_SYNC_SECONDS: "1", SOTA_BACKUP_S3_PREFIX: prefix }),
    SOTA_POOLER_PORTS: poolerPortsSetting(portOffset),
    SOTA_BACKUP_MIN_FREE: "0",
  });
  const hosts = new Set<Harness>();
  const layout = new ObjectLayout(prefix);
  const bed: DrBed = {
    s3,
    offHost,
    prefix,
    async host(extraEnv = {}) {
      const host = await startHost(offHost, extraEnv);
      hosts.add(host);
      return host;
    },
    async lose(host) {
      hosts.delete(host);
      await loseHost(host);
    },
    async manifest(projectId) {
      const objects = new S3ObjectStore(s3.config({ prefix }));
      try {
        return await readManifest({ objects, keyring: offHost.keyring }, layout, projectId).catch((error: unknown) => {
          if (error instanceof DomainError && error.kind === "not_found") return undefined;
          throw error;
        });
      } finally {
        objects.close();
      }
    },
    async untilInManifest(projectId, backupIds) {
      return eventually(`the manifest of ${projectId} naming ${backupIds.join(", ")}`, async () => {
        // A read that meets the manifest being rewritten (s3rver cuts it short: "aborted") is tried again.
        const manifest = await bed.manifest(projectId).catch(() => undefined);
        return manifest && backupIds.every((id) => manifest.backups.some((backup) => backup.id === id)) ? manifest : undefined;
      });
    },
    async untilCopied(host, project) {
      const base = await eventually(`the base backup of ${project.slug} copied off-host`, async () => {
        const { backups } = (await rest(host, `/v1/projects/${project.projectId}/database/backups`)).json;
        return backups.find((backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.offsite?.state === "OFFSITE_STATE_COPIED");
      });
      await bed.untilInManifest(project.projectId, [base.id]);
      const flushed = await host.app.runtime.pitr!.flushWal({ projectId: project.projectId, slug: project.slug });
      await eventually(`the WAL of ${project.slug} copied off-host`, async () =>
        (await host.app.store.listOffsiteWal(project.projectId)).some((record) => record.copiedAt > flushed) ? true : undefined,
      );
    },
    async close() {
      for (const host of hosts) await host.stop().catch(() => undefined);
      await s3.destroy();
      offHost.remove();
    },
  };
  return bed;
}
