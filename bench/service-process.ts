// The whole service as its own OS process (exactly the command `npm start`
// runs, see test/support/service-command.ts), on a throwaway data dir and a free
// loopback port: the benchmark talks to it the way the deploy engine does, and
// the service's RSS is its own, not the benchmark's.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashToken } from "../src/server/tokens.js";
import { removeDataDir } from "../test/support/data-dir-cleanup.js";
import { grpcClients, type GrpcCall } from "../test/support/grpc-client.js";
import { REPO_ROOT, serviceCommand } from "../test/support/service-command.js";
import { rssBytes } from "./proc-memory.js";

const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 120_000;

export interface ServiceProcess {
  readonly pid: number;
  readonly dataDir: string;
  /** host:port for gRPC clients. */
  readonly address: string;
  /** A deployer token: may ensure and read connection strings. */
  readonly token: string;
  readonly database: GrpcCall;
  readonly health: GrpcCall;
  rssBytes(): number;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  /** SOTA_POOLER_PORTS, distinct per service so services never share a port. */
  readonly poolerPorts: string;
  /** More SOTA_* variables. */
  readonly env?: Record<string, string>;
}

export async function startService(options: ServiceOptions): Promise<ServiceProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), "sota-bench-"));
  // postgres and pgbouncer run as an unprivileged user when we are root: it must reach the dir.
  await chmod(dataDir, 0o711);
  const token = `bench_${randomBytes(24).toString("hex")}`;
  const tokensFile = join(dataDir, "tokens.json");
  await writeFile(tokensFile, JSON.stringify([{ name: "bench", sha256: hashToken(token), role: "deployer" }]));
  const port = await freePort();
  const logFile = join(dataDir, "service.log");
  const log = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    const { command, args } = serviceCommand();
    child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env["PATH"] ?? "/usr/bin:/bin",
        SOTA_DATA_DIR: dataDir,
        SOTA_LISTEN: `127.0.0.1:${port}`,
        SOTA_TOKENS_FILE: tokensFile,
        SOTA_LOG_LEVEL: "info",
        SOTA_POOLER_PORTS: options.poolerPorts,
        // No scheduled backup may start in the middle of a measurement (29 February only).
        SOTA_BACKUP_SCHEDULE: "0 0 29 2 *",
        ...options.env,
      },
      stdio: ["ignore", log, log],
    });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const address = `127.0.0.1:${port}`;
  const clients = grpcClients(address);
  const stop = async (): Promise<void> => {
    clients.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await removeDataDir(dataDir);
  };
  try {
    await waitUntilAlive(`http://${address}/healthz`, child, logFile);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    pid: child.pid!,
    dataDir,
    address,
    token,
    database: clients.database,
    health: clients.health,
    rssBytes: () => rssBytes(child.pid!),
    stop,
  };
}

/**
 * Waits until the service has a spare copy of the template ready
 * (SOTA_SPARE_COPIES, 1 by default): a complete one is named s-{id} once it is
 * on disk. Samples of a new database start from that steady state.
 */
export async function waitForSpareCopy(service: ServiceProcess, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  const sparesDir = join(service.dataDir, "spares");
  while (Date.now() < until) {
    const names = await readdir(sparesDir).catch(() => [] as string[]);
    if (names.some((name) => name.startsWith("s-"))) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error("the service made no spare copy in time");
}

async function waitUntilAlive(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const until = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = (await readFile(logFile, "utf8").catch(() => "")).trim().split("\n").slice(-3).join(" / ");
      throw new Error(`the service exited at start: ${tail}`);
    }
    const ok = await fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the service did not answer ${url} within ${START_TIMEOUT_MS / 1000} s`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
