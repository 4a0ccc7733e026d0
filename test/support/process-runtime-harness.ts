// Opens process runtimes on a throwaway data dir with captured logs.
import { chmod, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, type Logger } from "../../src/log.js";
import { createProcessRuntime, type ProcessRuntime, type ProcessRuntimeOptions } from "../../src/runtime/process/index.js";
import { removeDataDir } from "./data-dir-cleanup.js";
import { MemoryPortRegistry } from "./memory-port-registry.js";

export { removeDataDir };

export interface CapturedLogs {
  readonly logger: Logger;
  text(): string;
}

export function captureLogs(): CapturedLogs {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void lines.push(line) } });
  return { logger, text: () => lines.join("") };
}

/**
 * A temp dir the run-as user can traverse (mkdtemp makes it 0700 and root's when
 * the tests run as root). `name` may be long to exercise the socket path limit.
 */
export async function makeDataDir(name = "sota-process-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), name));
  await chmod(dir, 0o711);
  return dir;
}

/**
 * A pooler port range per test file (offsets 0-99; 100-149 are the harness's
 * default), away from the service's default (16432-17431) and below Linux's
 * ephemeral range (32768 up): a port in that range can be the local end of
 * any outgoing connection on the machine, and Ensure then finds it "held by
 * another process".
 */
export function portRange(offset: number): { min: number; max: number } {
  const min = 17500 + offset * 100;
  if (!Number.isInteger(offset) || offset < 0 || min + 99 >= 32768) throw new Error(`no test port range at offset ${offset}`);
  return { min, max: min + 99 };
}

/** portRange as the value of SOTA_POOLER_PORTS. */
export function poolerPortsSetting(offset: number): string {
  const { min, max } = portRange(offset);
  return `${min}-${max}`;
}

export interface ProcessTestBed {
  readonly dataDir: string;
  readonly ports: MemoryPortRegistry;
  readonly logs: CapturedLogs;
  open(overrides?: Partial<ProcessRuntimeOptions>): Promise<ProcessRuntime>;
}

export async function processTestBed(rangeOffset: number): Promise<ProcessTestBed> {
  const dataDir = await makeDataDir();
  const ports = new MemoryPortRegistry();
  const logs = captureLogs();
  return {
    dataDir,
    ports,
    logs,
    open: (overrides = {}) =>
      createProcessRuntime({
        dataDir,
        ports,
        portRange: portRange(rangeOffset),
        readyTimeoutMs: 30_000,
        logger: logs.logger,
        ...overrides,
      }),
  };
}
