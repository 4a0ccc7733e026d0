// PAUSE/RESUME around a swap: RESUME runs whatever happens, and an open
// transaction cannot hold the restore forever.
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { notePaused, resumeInterruptedRestores } from "../../src/backup/pause-marker.js";
import { withPausedDatabase } from "../../src/backup/pooler-pause.js";
import { createLogger } from "../../src/log.js";
import type { RuntimeTarget } from "../../src/runtime/runtime.js";
import { FakeDumpRuntime } from "../support/backup-fakes.js";

const target = { projectId: "4f6c1b9e-8d2a-4c3b-9e1f-2a3b4c5d6e7f", slug: "my-app" };
const logger = createLogger({ level: "silent" });

class PoolerFake extends FakeDumpRuntime {
  readonly calls: string[] = [];
  private readonly pendingPauses: Array<() => void> = [];
  constructor(private readonly pauseBehaviour: "at-once" | "until-terminated" | "never") {
    super();
  }
  override poolerCommand(_target: RuntimeTarget, command: string): Promise<Record<string, string | null>[]> {
    this.calls.push(command);
    if (command.startsWith("PAUSE") && this.pauseBehaviour !== "at-once") {
      return new Promise((resolve) => this.pendingPauses.push(() => resolve([])));
    }
    return Promise.resolve([]);
  }
  override adminQuery(_target: RuntimeTarget, sql: string): Promise<Record<string, string | null>[]> {
    this.calls.push(sql.includes("pg_terminate_backend") ? "terminate" : sql);
    if (this.pauseBehaviour === "until-terminated") for (const release of this.pendingPauses.splice(0)) release();
    return Promise.resolve([]);
  }
}

const options = { graceMs: 30, timeoutMs: 200, logger };
const PAUSED = ['PAUSE "my-app"', 'PAUSE "my-app_session"'];
const RESUMED = ['RESUME "my-app"', 'RESUME "my-app_session"'];

describe("withPausedDatabase", () => {
  it("pauses the quoted database names of both pools, runs the work, resumes both", async () => {
    const runtime = new PoolerFake("at-once");
    expect(await withPausedDatabase(runtime, target, options, async () => "swapped")).toBe("swapped");
    expect(runtime.calls).toEqual([...PAUSED, ...RESUMED]);
  });

  it("resumes when the work fails", async () => {
    const runtime = new PoolerFake("at-once");
    await expect(
      withPausedDatabase(runtime, target, options, async () => {
        throw new Error("rename failed");
      }),
    ).rejects.toThrow("rename failed");
    expect(runtime.calls.slice(-2)).toEqual(RESUMED);
  });

  it("ends the sessions of transactions still open after the grace period", async () => {
    const runtime = new PoolerFake("until-terminated");
    await withPausedDatabase(runtime, target, options, async () => undefined);
    expect(runtime.calls).toEqual([...PAUSED, "terminate", ...RESUMED]);
  });

  it("gives up, without running the work, when PAUSE never completes, and still resumes", async () => {
    const runtime = new PoolerFake("never");
    let ran = false;
    await expect(
      withPausedDatabase(runtime, target, options, async () => {
        ran = true;
      }),
    ).rejects.toThrow(/did not pause "my-app" within 200 ms/);
    expect(ran).toBe(false);
    expect(runtime.calls.slice(-2)).toEqual(RESUMED);
  });
});

describe("a restore killed while the database is paused", () => {
  it("is resumed on the next start from the note it left", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sota-pause-"));
    try {
      const marker = await notePaused(dir, target);
      const runtime = new PoolerFake("at-once");
      await resumeInterruptedRestores(dir, runtime, logger);
      expect(runtime.calls).toEqual(RESUMED);
      expect(existsSync(marker)).toBe(false);
      await resumeInterruptedRestores(dir, runtime, logger);
      expect(runtime.calls).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
