// Disaster recovery tests: what an operator keeps off the host (the master
// key file and the tokens file, here in a directory of their own, and the
// bucket), and hosts that come and go around them: each starts the whole
// service in-process on a data dir of its own, and is destroyed with its
// data dir (rm -rf, once none of its processes is left).
import { randomBytes, randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import { Keyring } from "../../src/secrets/keyring.js";
import { hashToken } from "../../src/server/tokens.js";
import type { Harness } from "./app-harness.js";
import { removeDataDir } from "./data-dir-cleanup.js";

/** What survives the host: kept elsewhere by the operator. */
export interface OffHost {
  readonly dir: string;
  readonly masterKeyFile: string;
  readonly tokensFile: string;
  readonly tokens: Harness["tokens"];
  readonly keyring: Keyring;
  /** SOTA_* the service needs besides a data dir: the secrets above, the bucket, the port range. */
  readonly env: Record<string, string>;
  remove(): void;
}

export function offHostSecrets(env: Record<string, string>): OffHost {
  const dir = mkdtempSync(join(tmpdir(), "sota-offhost-"));
  const key = randomBytes(32).toString("base64");
  const masterKeyFile = join(dir, "master.key");
  writeFileSync(masterKeyFile, `${key}\n`, { mode: 0o600 });
  const tokens = {
    admin: `adm_${randomBytes(24).toString("hex")}`,
    deployer: `dep_${randomBytes(24).toString("hex")}`,
    project: `prj_${randomBytes(24).toString("hex")}`,
    other: `oth_${randomBytes(24).toString("hex")}`,
  };
  const tokensFile = join(dir, "tokens.json");
  writeFileSync(
    tokensFile,
    JSON.stringify([
      { name: "ops", sha256: hashToken(tokens.admin), role: "admin" },
      { name: "deploy-engine", sha256: hashToken(tokens.deployer), role: "deployer" },
    ]),
    { mode: 0o600 },
  );
  return {
    dir,
    masterKeyFile,
    tokensFile,
    tokens,
    keyring: Keyring.fromBase64([key]),
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
  const logs: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void logs.push(line) } });
  const host: Harness = {
    dataDir,
    tokens: offHost.tokens,
    projectId: randomUUID(),
    otherProjectId: randomUUID(),
    logs,
    env,
    app: undefined as unknown as Harness["app"],
    async start() {
      host.app = await startApp(loadConfig(env), { logger, defaultMetrics: false });
      return host.app;
    },
    async restart() {
      await host.app.close();
      return host.start();
    },
    async stop() {
      await host.app?.close();
      await removeDataDir(dataDir);
    },
  };
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
