// Starts the whole service in-process, as main.ts does, on a free loopback
// port with a throwaway data dir, known tokens and captured logs.
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { startApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import { hashToken } from "../../src/server/tokens.js";
import { removeDataDir } from "./data-dir-cleanup.js";
import { poolerPortsSetting } from "./process-runtime-harness.js";

export interface Harness {
  readonly dataDir: string;
  readonly tokens: { admin: string; deployer: string; project: string; other: string };
  /** The project the `project` token is bound to. */
  readonly projectId: string;
  readonly otherProjectId: string;
  readonly logs: string[];
  readonly env: Record<string, string>;
  app: App;
  start(): Promise<App>;
  restart(): Promise<App>;
  stop(): Promise<void>;
}

export async function startHarness(extraEnv: Record<string, string> = {}): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), "sota-e2e-"));
  // postgres and pgbouncer run as an unprivileged user when we are root: it must reach the dir.
  chmodSync(dataDir, 0o755);
  const projectId = randomUUID();
  const otherProjectId = randomUUID();
  const tokens = testTokens();
  const tokensFile = join(dataDir, "tokens.json");
  writeTokensFile(tokensFile, tokens, projectId, otherProjectId);
  const env = {
    SOTA_DATA_DIR: dataDir,
    SOTA_LISTEN: "127.0.0.1:0",
    SOTA_TOKENS_FILE: tokensFile,
    SOTA_LOG_LEVEL: "debug",
    SOTA_POOLER_PORTS: poolerPorts(),
    ...extraEnv,
  };
  const harness = harnessOn({ dataDir, tokens, projectId, otherProjectId, env });
  await harness.start();
  return harness;
}

/** The tokens file of `tokens`: the project ones bound to `projectId` and `otherProjectId`. */
export function writeTokensFile(file: string, tokens: Harness["tokens"], projectId: string, otherProjectId: string): void {
  const entries = [
    { name: "ops", sha256: hashToken(tokens.admin), role: "admin" },
    { name: "deploy-engine", sha256: hashToken(tokens.deployer), role: "deployer" },
    { name: "customer", sha256: hashToken(tokens.project), role: "project", projectId },
    { name: "other-customer", sha256: hashToken(tokens.other), role: "project", projectId: otherProjectId },
  ];
  writeFileSync(file, JSON.stringify(entries), { mode: 0o600 });
}

/** A token of each kind the tests use, random. */
export function testTokens(): Harness["tokens"] {
  return {
    admin: `adm_${randomBytes(24).toString("hex")}`,
    deployer: `dep_${randomBytes(24).toString("hex")}`,
    project: `prj_${randomBytes(24).toString("hex")}`,
    other: `oth_${randomBytes(24).toString("hex")}`,
  };
}

/** A service on `dataDir` with `env`, not started yet: captured logs, start, restart, and stop (which removes the data dir). */
export function harnessOn(fields: Pick<Harness, "dataDir" | "tokens" | "projectId" | "otherProjectId" | "env">): Harness {
  const { dataDir, env } = fields;
  const logs: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void logs.push(line) } });
  const harness: Harness = {
    ...fields,
    logs,
    app: undefined as unknown as App,
    async start() {
      harness.app = await startApp(loadConfig(env), { logger, defaultMetrics: false });
      return harness.app;
    },
    async restart() {
      await harness.app.close();
      // Same port range, same data dir: a new process would see exactly this.
      return harness.start();
    },
    async stop() {
      await harness.app?.close();
      await removeDataDir(dataDir);
    },
  };
  return harness;
}

/** A pooler port range for files that name none (see portRange). */
function poolerPorts(): string {
  return poolerPortsSetting(100 + (process.pid % 50));
}
