// The Coordination port: what replicas sharing one state must agree on.
// Per-project work (Ensure, Restore, a dump against a restore's swap) runs
// under a lock every replica respects; one replica at a time leads the backup
// schedule; and a part that can run on only one replica (the process runtime,
// whose databases are children on its host) is claimed exclusively. With the
// embedded SQLite state there is one service per state (the data dir's lock
// sees to it), so the local implementation keeps it all in-process; with the
// PostgreSQL state, postgres-coordination.ts uses advisory locks.
import { KeyedLock } from "../runtime/keyed-lock.js";

/** Lock scopes: locks of different scopes on one key do not exclude each other. */
export type LockScope =
  /** A use-case on one project (Ensure, Restore): one outcome however many replicas are asked at once. */
  | "project"
  /**
   * A dump, a base backup, a restore's swap or recovery, or the removal of one
   * database: a swap would end a running dump's session, a recovery or a
   * removal would pull the server from under a base backup.
   */
  | "dump";

export interface LeadershipListener {
  /** This replica now leads: start the schedule. */
  elected(): void;
  /** This replica no longer leads (its hold on the state store is gone): stop at once. */
  deposed(): void;
}

export interface Coordination {
  /** Names this replica in what it records (the schedule's claimed slots). */
  readonly replica: string;
  /** Runs `work` once no other caller, here or on another replica, holds the lock. */
  withLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T>;
  /** Runs `work` only when nobody holds the lock now; answers undefined without running it otherwise. */
  tryWithLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T | undefined>;
  /** Campaigns for leadership of the schedule for the coordination's life; the listener hears every change. */
  lead(listener: LeadershipListener): void;
  isLeader(): boolean;
  /**
   * Holds `part` for this replica's life; rejects with SingleReplicaError,
   * one line, when another replica on the same state already holds it.
   */
  holdExclusively(part: string): Promise<void>;
  close(): Promise<void>;
}

/** A part of the service that only one replica of a state may run. */
export class SingleReplicaError extends Error {
  override readonly name = "SingleReplicaError";
}

/** One service per state: locks are in-process and this replica always leads. */
export class LocalCoordination implements Coordination {
  readonly replica: string;
  private readonly locks = { project: new KeyedLock(), dump: new KeyedLock() };
  private leading = false;

  constructor(replica: string) {
    this.replica = replica;
  }

  withLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T> {
    return this.locks[scope].run(key, work);
  }

  async tryWithLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T | undefined> {
    if (this.locks[scope].busy(key)) return undefined;
    return this.locks[scope].run(key, work);
  }

  lead(listener: LeadershipListener): void {
    this.leading = true;
    listener.elected();
  }

  isLeader(): boolean {
    return this.leading;
  }

  async holdExclusively(): Promise<void> {}

  async close(): Promise<void> {
    this.leading = false;
  }
}
