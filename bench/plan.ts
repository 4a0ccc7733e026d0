// How much each row measures: the full run (under 10 minutes on the 2-core
// reference machine) or the --quick smoke run CI uses (about 2 minutes). Every
// loop is bounded twice, by a count from here and by a time budget.

export interface Plan {
  readonly mode: "full" | "quick";
  /** New databases per variant of row 1, after one unmeasured warm-up each. */
  readonly ensureNewRuns: number;
  readonly dockerRuns: number;
  /** Sequential Ensure calls on an existing database (row 2). */
  readonly ensureExistingCalls: number;
  /** Rounds of GetConnection and of the no-op, alternating (row 3), and calls in each. */
  readonly grpcRounds: number;
  readonly grpcCallsPerRound: number;
  readonly grpcConcurrency: number;
  /** Databases provisioned for density (row 4), and how many at each end are compared. */
  readonly densityDatabases: number;
  readonly densityEdge: number;
  /** Rounds of the 100-client pooling check (row 5). */
  readonly poolingRounds: number;
  /** Rounds with the pool reset on and off each, and transactions per client in each (rows 5d-5e). */
  readonly poolResetRounds: number;
  readonly poolResetTransactionsPerClient: number;
  /** Size of the backed-up database and rounds of each backup kind (row 6). */
  readonly backupBytes: number;
  readonly backupRounds: number;
  /** Size of each deleted database and how many are deleted with a final backup, and without (row 7). */
  readonly deleteBytes: number;
  readonly deleteRounds: number;
  /** Size of the file uploaded, and rounds of plain and off-host uploads each (rows 6s-6t). */
  readonly offsiteBytes: number;
  readonly offsiteRounds: number;
  /** Rotations timed, and connections held open across each (row 8). */
  readonly rotateRounds: number;
  readonly rotateOpenConnections: number;
  /** Size of the database restored to a point in time, rounds of driver and floor each (rows 9b-9c). */
  readonly pitrBytes: number;
  readonly pitrRounds: number;
  /** How long an idle database's WAL is watched (row 9d), after settling for at most idleWalSettleSeconds. */
  readonly idleWalSeconds: number;
  readonly idleWalSettleSeconds: number;
}

export function planFor(argv: readonly string[]): Plan {
  if (argv.includes("--quick")) {
    return {
      mode: "quick",
      ensureNewRuns: 4,
      dockerRuns: 2,
      ensureExistingCalls: 100,
      grpcRounds: 2,
      grpcCallsPerRound: 600,
      grpcConcurrency: 32,
      densityDatabases: 10,
      densityEdge: 3,
      poolingRounds: 1,
      poolResetRounds: 2,
      poolResetTransactionsPerClient: 100,
      backupBytes: 32 * 1024 * 1024,
      backupRounds: 2,
      deleteBytes: 16 * 1024 * 1024,
      deleteRounds: 1,
      offsiteBytes: 32 * 1024 * 1024,
      offsiteRounds: 2,
      rotateRounds: 3,
      rotateOpenConnections: 5,
      pitrBytes: 32 * 1024 * 1024,
      pitrRounds: 1,
      idleWalSeconds: 15,
      idleWalSettleSeconds: 90,
    };
  }
  return {
    mode: "full",
    ensureNewRuns: 15,
    dockerRuns: 5,
    ensureExistingCalls: 2000,
    grpcRounds: 5,
    grpcCallsPerRound: 4000,
    grpcConcurrency: 32,
    densityDatabases: 100,
    densityEdge: 5,
    poolingRounds: 3,
    poolResetRounds: 5,
    poolResetTransactionsPerClient: 500,
    backupBytes: 1024 * 1024 * 1024,
    backupRounds: 2,
    deleteBytes: 100 * 1024 * 1024,
    deleteRounds: 3,
    offsiteBytes: 256 * 1024 * 1024,
    offsiteRounds: 3,
    rotateRounds: 10,
    rotateOpenConnections: 20,
    pitrBytes: 1024 * 1024 * 1024,
    pitrRounds: 2,
    idleWalSeconds: 120,
    idleWalSettleSeconds: 240,
  };
}
