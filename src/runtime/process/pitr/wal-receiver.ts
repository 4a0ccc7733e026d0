// One database's WAL receiver: pg_receivewal, run as the instance's OS user,
// streaming the server's WAL through a replication slot into the current
// generation of the archive (see wal-archive.ts), flushing every write
// (--synchronous: a commit is on the archive's disk within milliseconds,
// which is the recovery point objective). Supervised like the server: ensure
// starts it without waiting for it, and it is restarted with backoff when it
// exits. It runs with --no-loop, so that every reconnection goes through
// `prepare`, which checks the slot first.
import type { Logger } from "../../../log.js";
import { SupervisedProcess } from "../children/supervised-process.js";
import { rotateLogIfLarge } from "../children/log-rotation.js";
import { WAL_RECEIVER_NAME, WAL_SLOT } from "../children/postgres-settings.js";
import type { InstancePaths } from "../instance/instance-paths.js";
import type { RunAs } from "../host/os-user.js";
import { superuserClient } from "../sql/pg-clients.js";
import { createSlot, dropSlot, endSlotSession, replicationConnectionArgs, slotState } from "./replication-slot.js";
import { WalArchive } from "./wal-archive.js";

export interface WalReceiverOptions {
  readonly slug: string;
  /** pg_receivewal. */
  readonly binary: string;
  readonly runAs: RunAs;
  readonly paths: InstancePaths;
  readonly logger: Logger;
  /** The instance's cgroup: the receiver's cost is the database's. */
  readonly onSpawn?: (pid: number) => Promise<void>;
}

export class WalReceiver {
  readonly process: SupervisedProcess;
  readonly archive: WalArchive;
  /** prepareArchive, one at a time: the receiver's restarts and base backups both call it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: WalReceiverOptions) {
    this.archive = new WalArchive(options.paths, options.runAs, options.slug);
    this.process = new SupervisedProcess({
      name: "wal-receiver",
      command: options.binary,
      // Set by `prepare`, once the generation is known.
      args: [],
      runAs: options.runAs,
      cwd: options.paths.dir,
      outputFile: options.paths.walReceiverLog,
      // SIGINT: pg_receivewal flushes and closes its segment, then exits.
      stopSignals: ["SIGINT", "SIGTERM", "SIGKILL"],
      stopStepMs: 10_000,
      logger: options.logger,
      ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
      prepare: () => this.prepare(),
    });
  }

  get running(): boolean {
    return this.process.running;
  }

  /** Starts it (once the server is up), without waiting; it keeps running until `stop`. */
  keepRunning(): void {
    this.process.keepRunning();
  }

  stop(): Promise<void> {
    return this.process.stop();
  }

  /**
   * Makes sure the slot holds WAL for the archive and returns the current
   * generation, opening a new one when the archive cannot carry on: there is
   * none yet, or the slot was missing or lost while the current generation
   * holds WAL (what lies between may be gone from the server). A base backup
   * calls it before it starts, so the WAL it needs is kept until archived.
   * `takeOver`: end a session still streaming from the slot (a receiver left
   * by a killed run of the service), before this one starts.
   */
  prepareArchive(takeOver = false): Promise<string> {
    const run = (): Promise<string> => this.prepareArchiveNow(takeOver);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async prepare(): Promise<void> {
    const generation = await this.prepareArchive(true);
    this.process.relocate({ args: receiverArgs(this.options.paths.socketDir, this.archive.generationDir(generation)) });
    await rotateLogIfLarge(this.options.paths.walReceiverLog);
  }

  private async prepareArchiveNow(takeOver: boolean): Promise<string> {
    const { archive, options } = this;
    const client = superuserClient(options.paths.socketDir, "postgres");
    await client.connect();
    try {
      let current = await archive.current();
      const slot = await slotState(client);
      if (slot.activePid !== undefined && (takeOver || slot.state === "lost")) await endSlotSession(client, slot.activePid);
      if (slot.state === "lost") {
        options.logger.warn(
          { slug: options.slug, generation: current },
          "the WAL receiver's slot was lost (more WAL than max_slot_wal_keep_size went unarchived): a new WAL generation begins, and recovery past this point needs a new base backup",
        );
        await dropSlot(client);
      }
      if (slot.state !== "kept") {
        if (current === undefined || (await archive.files(current)).length > 0) current = await this.openGeneration();
        await createSlot(client);
      } else if (current === undefined) {
        current = await this.openGeneration();
      }
      await archive.ensureGenerationDir(current);
      return current;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async openGeneration(): Promise<string> {
    const id = await this.archive.openGeneration();
    this.options.logger.info({ slug: this.options.slug, generation: id }, "WAL archive: new generation");
    return id;
  }
}

/** Over the private socket as the superuser, through the slot, flushing every write, exiting when the connection ends. */
function receiverArgs(socketDir: string, directory: string): string[] {
  return [
    "--dbname",
    `application_name=${WAL_RECEIVER_NAME}`,
    ...replicationConnectionArgs(socketDir),
    "--directory",
    directory,
    "--slot",
    WAL_SLOT,
    "--synchronous",
    "--no-loop",
  ];
}
