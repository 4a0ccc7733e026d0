// Coordination of replicas through the PostgreSQL state store's advisory
// locks. Session-level locks held on connections of their own (never the
// store's pool, whose connections the locked work needs): a replica that dies
// ends its sessions, and PostgreSQL frees its locks at once.
//
// Keys use the two-int form pg_advisory_lock(class, hashtext(key)): a class
// per purpose below, apart from the migration lock's one-bigint key. Two keys
// whose hashes collide only wait for each other, which is safe.
import pg from "pg";
import { loggableError, type Logger } from "../log.js";
import { SingleReplicaError, type Coordination, type LeadershipListener, type LockScope } from "./coordination.js";
import { KeyedLock } from "../runtime/keyed-lock.js";

const LOCK_CLASS: Record<LockScope | "leader" | "exclusive", number> = {
  project: 0x50_52_4a_01,
  dump: 0x50_52_4a_02,
  leader: 0x50_52_4a_03,
  exclusive: 0x50_52_4a_04,
};

export interface PostgresCoordinationOptions {
  /** SOTA_STATE_URL; a secret, never logged. */
  readonly url: string;
  readonly replica: string;
  readonly logger: Logger;
  /** How often a follower tries to become leader, and a leader checks it still is (default 5 s). */
  readonly leaderIntervalMs?: number;
  /** Connections holding project and dump locks at once (default 32); more wait their turn. */
  readonly maxLockConnections?: number;
}

export class PostgresCoordination implements Coordination {
  readonly replica: string;
  private readonly pool: pg.Pool;
  /** One connection per key and process: callers here queue in memory, not on the server. */
  private readonly local = { project: new KeyedLock(), dump: new KeyedLock() };
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private listener: LeadershipListener | undefined;
  private leaderClient: pg.Client | undefined;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private campaigning: Promise<void> | undefined;
  private readonly held: pg.Client[] = [];
  private closed = false;

  constructor(private readonly options: PostgresCoordinationOptions) {
    this.replica = options.replica;
    this.logger = options.logger;
    this.intervalMs = options.leaderIntervalMs ?? 5_000;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.maxLockConnections ?? 32,
      connectionTimeoutMillis: 10_000,
      application_name: "sota-db locks",
      keepAlive: true,
    });
    this.pool.on("error", () => undefined);
  }

  withLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T> {
    return this.local[scope].run(key, () => this.locked(scope, key, true, work).then((outcome) => outcome!.value));
  }

  async tryWithLock<T>(scope: LockScope, key: string, work: () => Promise<T>): Promise<T | undefined> {
    if (this.local[scope].busy(key)) return undefined;
    const outcome = await this.local[scope].run(key, () => this.locked(scope, key, false, work));
    return outcome?.value;
  }

  private async locked<T>(scope: LockScope, key: string, wait: boolean, work: () => Promise<T>): Promise<{ value: T } | undefined> {
    const client = await this.pool.connect();
    // A connection lost while checked out emits here; without a listener it would end the process.
    let lost: Error | undefined;
    const onError = (error: Error): void => {
      lost = error;
      this.logger.error({ scope, key, err: loggableError(error) }, "lost the state store connection holding a lock");
    };
    client.on("error", onError);
    let locked = false;
    try {
      if (wait) {
        // Returns once held (void): the wait is on the server, on this connection.
        await client.query("SELECT pg_advisory_lock($1, hashtext($2))", [LOCK_CLASS[scope], key]);
        locked = true;
      } else {
        const { rows } = await client.query<{ got: boolean }>("SELECT pg_try_advisory_lock($1, hashtext($2)) AS got", [LOCK_CLASS[scope], key]);
        locked = rows[0]?.got === true;
        if (!locked) return undefined;
      }
      return { value: await work() };
    } finally {
      if (locked && !lost) {
        await client.query("SELECT pg_advisory_unlock($1, hashtext($2))", [LOCK_CLASS[scope], key]).catch((error: unknown) => {
          lost = error as Error;
        });
      }
      client.off("error", onError);
      // A connection in doubt is closed, not pooled: closing it frees whatever it still holds.
      client.release(lost ?? false);
    }
  }

  lead(listener: LeadershipListener): void {
    if (this.listener) throw new Error("already campaigning");
    this.listener = listener;
    this.campaigning = this.campaign();
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** One round: connect if needed, take the lease if free, or check it is still ours; then the next round. */
  private async campaign(): Promise<void> {
    if (this.closed) return;
    try {
      const client = this.leaderClient ?? (await this.connectLeader());
      if (this.leading) {
        await client.query("SELECT 1");
      } else {
        const { rows } = await client.query<{ got: boolean }>("SELECT pg_try_advisory_lock($1, 0) AS got", [LOCK_CLASS.leader]);
        if (rows[0]?.got && !this.closed) {
          this.leading = true;
          this.logger.info({ replica: this.replica }, "leading the backup schedule");
          this.listener?.elected();
        }
      }
    } catch (error) {
      this.dropLeaderConnection(error);
    }
    if (!this.closed) {
      this.timer = setTimeout(() => {
        this.campaigning = this.campaign();
      }, this.intervalMs);
      this.timer.unref();
    }
  }

  private async connectLeader(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.options.url,
      application_name: "sota-db leader",
      connectionTimeoutMillis: 10_000,
      // A check that does not answer in time counts as a lost lease.
      query_timeout: Math.max(this.intervalMs, 5_000),
      keepAlive: true,
      keepAliveInitialDelayMillis: 5_000,
    });
    client.on("error", (error) => this.dropLeaderConnection(error));
    client.on("end", () => this.dropLeaderConnection(new Error("connection ended")));
    this.leaderClient = client;
    await client.connect();
    // The server side too: a leader whose host vanishes without closing its socket loses the lease in about 20 s.
    await client.query("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3");
    return client;
  }

  /** Without its connection the lease is gone (the server frees it): stop leading at once. */
  private dropLeaderConnection(error: unknown): void {
    const client = this.leaderClient;
    if (!client) return;
    this.leaderClient = undefined;
    client.removeAllListeners("end");
    client.on("error", () => undefined);
    void client.end().catch(() => undefined);
    if (this.leading) {
      this.leading = false;
      if (!this.closed) this.logger.error({ replica: this.replica, err: loggableError(error) }, "lost the lead of the backup schedule");
      this.listener?.deposed();
    }
  }

  async holdExclusively(part: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.url, application_name: "sota-db exclusive", keepAlive: true, connectionTimeoutMillis: 10_000 });
    client.on("error", (error) => this.logger.error({ part, err: loggableError(error) }, "lost the state store connection holding a single-replica part"));
    await client.connect();
    const { rows } = await client.query<{ got: boolean }>("SELECT pg_try_advisory_lock($1, hashtext($2)) AS got", [LOCK_CLASS.exclusive, part]);
    if (!rows[0]?.got) {
      await client.end().catch(() => undefined);
      throw new SingleReplicaError(
        `another sota-db replica already runs the ${part} on this state store (SOTA_STATE_URL); it keeps its databases on its own host, so it runs on one replica only`,
      );
    }
    this.held.push(client);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.campaigning;
    this.dropLeaderConnection(new Error("closing"));
    await Promise.all(this.held.splice(0).map((client) => client.end().catch(() => undefined)));
    if (!this.pool.ended) await this.pool.end();
  }
}
