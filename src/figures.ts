// What a database's live figures are: its size and how busy its pool is. Read
// by the service (service/database-figures.ts), shown by GetDatabase and
// exported by /metrics; declared here so both read the same shape.

/** PgBouncer's totals since it started: they restart from 0 with PgBouncer. */
export interface PoolerTotals {
  readonly transactions: number;
  readonly queries: number;
  readonly receivedBytes: number;
  readonly sentBytes: number;
  readonly transactionSeconds: number;
  readonly querySeconds: number;
  readonly waitSeconds: number;
}

export interface DatabaseFigures {
  readonly sizeBytes: number;
  readonly clients: { readonly active: number; readonly waiting: number };
  readonly servers: { readonly active: number; readonly idle: number };
  readonly maxWaitSeconds: number;
  /** The pool limits in effect, as the running PgBouncer reported them at Ensure. */
  readonly maxClientConnections: number;
  readonly poolSize: number;
  readonly totals: PoolerTotals;
  readonly readAt: Date;
}
