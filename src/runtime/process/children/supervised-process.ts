// One long-running child (a postmaster or a pgbouncer) that is restarted with
// backoff when it dies, and stopped with an escalating series of signals.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, constants, openSync } from "node:fs";
import { loggableError, type Logger } from "../../../log.js";
import type { RunAs } from "../host/os-user.js";
import { childEnv, userSpawnOptions } from "./run-command.js";

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface SupervisedProcessOptions {
  /** For logs and errors: "postgres" or "pgbouncer". */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly runAs: RunAs;
  readonly cwd: string;
  /**
   * stdout and stderr are appended here; without it they are discarded. The
   * service opens it and hands the child the descriptor, so it must lie in a
   * directory of the service's (the child cannot redirect it) and stays the
   * service's file.
   */
  readonly outputFile?: string;
  /** Signals sent in turn on stop, each followed by up to stopStepMs of waiting. */
  readonly stopSignals: readonly NodeJS.Signals[];
  readonly stopStepMs: number;
  /** Runs before every start and restart (clear leftovers, rewrite config). */
  readonly prepare?: () => Promise<void>;
  /**
   * Runs as soon as the child is spawned, before it counts as started (its
   * cgroup: see instance-cgroups.ts). When it fails the child is killed and
   * the start fails: a database never runs without the limits it was given.
   */
  readonly onSpawn?: (pid: number) => Promise<void>;
  /** Open descriptors the child gets as its fds 3, 4, ... (socket activation); asked after `prepare`. */
  readonly passFds?: () => readonly number[];
  readonly logger: Logger;
}

/** Never through a symlink, whoever put one there. */
const APPEND_NO_FOLLOW = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 15_000;
/** A child that ran this long before dying counts as healthy: backoff starts over. */
const STABLE_AFTER_MS = 30_000;

export class SupervisedProcess {
  private child: ChildProcess | undefined;
  private isSupervising = false;
  private stopped = false;
  private failures = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private restarting: Promise<void> | undefined;
  private readonly exitListeners = new Set<(exit: ExitInfo) => void>();

  constructor(private options: SupervisedProcessOptions) {}

  /**
   * Changes what later (re)starts run, leaving a running child alone: a warm
   * PostgreSQL keeps running while its directory is renamed to its project's.
   */
  relocate(changes: Partial<Pick<SupervisedProcessOptions, "args" | "cwd" | "outputFile" | "logger" | "onSpawn">>): void {
    this.options = { ...this.options, ...changes };
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    const child = this.child;
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Spawns the child (after `prepare`); resolves once it has been spawned, not once it is ready. */
  async start(): Promise<void> {
    this.stopped = false;
    if (this.running) return;
    await this.options.prepare?.();
    await this.spawnChild();
  }

  get supervising(): boolean {
    return this.isSupervising;
  }

  /** From now on an unexpected exit is followed by a restart. */
  supervise(): void {
    this.isSupervising = true;
  }

  /**
   * Starts the child supervised, without waiting for it: a start that fails
   * (its `prepare` too) is retried with the same backoff as a crash. For a
   * helper (the WAL receiver) that the caller must not wait for. A no-op
   * while it runs or a (re)start is pending.
   */
  keepRunning(): void {
    this.isSupervising = true;
    this.stopped = false;
    if (this.running || this.restartTimer !== undefined || this.restarting !== undefined) return;
    this.restarting = this.start()
      .catch((error: unknown) => {
        if (!this.stopped) this.scheduleRestart(undefined, error);
      })
      .finally(() => {
        this.restarting = undefined;
      });
  }

  /** Called on every exit that stop() did not ask for. */
  onExit(listener: (exit: ExitInfo) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.isSupervising = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.restarting;
    const child = this.child;
    if (!child || !this.running) return;
    for (const signal of this.options.stopSignals) {
      const exited = waitForExit(child, this.options.stopStepMs);
      signalChild(child, signal);
      if (await exited) return;
      this.options.logger.warn({ process: this.options.name, signal }, "child did not stop in time; escalating");
    }
  }

  private async spawnChild(): Promise<void> {
    const child = await this.spawnOnly();
    const { onSpawn } = this.options;
    if (onSpawn === undefined || child.pid === undefined) return;
    try {
      await onSpawn(child.pid);
    } catch (error) {
      // Disowned first, so that its exit is not taken for a crash: the caller
      // (start, or the restart loop with its backoff) sees the failure.
      this.child = undefined;
      signalChild(child, "SIGKILL");
      throw error;
    }
  }

  private spawnOnly(): Promise<ChildProcess> {
    const { options } = this;
    const output = options.outputFile === undefined ? "ignore" : openSync(options.outputFile, APPEND_NO_FOLLOW, 0o600);
    let child: ChildProcess;
    try {
      child = spawn(options.command, options.args, {
        ...userSpawnOptions(options.runAs),
        cwd: options.cwd,
        env: childEnv(),
        stdio: ["ignore", output, output, ...(options.passFds?.() ?? [])],
        // Its own process group: a Ctrl-C meant for the service must not reach
        // the children before the service has decided how to stop them.
        detached: true,
      });
    } finally {
      if (typeof output === "number") closeSync(output);
    }
    this.child = child;
    this.startedAt = Date.now();
    child.on("exit", (code, signal) => this.handleExit(child, { code, signal }));
    return new Promise((resolve, reject) => {
      child.once("spawn", () => resolve(child));
      child.on("error", (error) => {
        options.logger.warn({ process: options.name, err: loggableError(error) }, "child process error");
        reject(error);
      });
    });
  }

  private handleExit(child: ChildProcess, exit: ExitInfo): void {
    if (child !== this.child || this.stopped) return;
    for (const listener of this.exitListeners) listener(exit);
    if (!this.isSupervising) return;
    if (Date.now() - this.startedAt >= STABLE_AFTER_MS) this.failures = 0;
    this.scheduleRestart(exit);
  }

  private scheduleRestart(exit: ExitInfo | undefined, error?: unknown): void {
    const delayMs = Math.min(FIRST_BACKOFF_MS * 2 ** this.failures, MAX_BACKOFF_MS);
    this.failures += 1;
    this.options.logger.warn(
      {
        process: this.options.name,
        ...(exit ? { exitCode: exit.code, signal: exit.signal } : {}),
        ...(error ? { err: loggableError(error) } : {}),
        restartInMs: delayMs,
      },
      exit ? "child exited unexpectedly; restarting" : "child restart failed; retrying",
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarting = this.restart().finally(() => {
        this.restarting = undefined;
      });
    }, delayMs);
  }

  private async restart(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.options.prepare?.();
      if (this.stopped) return;
      await this.spawnChild();
      this.options.logger.info({ process: this.options.name, pid: this.child?.pid }, "child restarted");
    } catch (error) {
      if (!this.stopped) this.scheduleRestart(undefined, error);
    }
  }
}

function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    // SIGKILL goes to the whole group: a postmaster killed that way would leave
    // its backends behind, holding the shared memory the next start needs.
    if (signal === "SIGKILL" && child.pid !== undefined) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // Already gone.
  }
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}
