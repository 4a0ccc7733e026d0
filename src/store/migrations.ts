// Versioned state schemas. Each store keeps an ordered list of forward
// migrations (version 1, 2, …) and records the version it reached; at start it
// applies the ones after the recorded version, in one transaction, and refuses
// a state whose version is newer than the code (a rolled-back release must not
// write into a schema it does not know).

export interface Migration {
  /** 1, 2, …: the schema version after this migration. */
  readonly version: number;
  /** What the migration changes, for whoever reads the list. */
  readonly description: string;
  readonly sql: string;
}

/** The state was written by a newer release than this one. */
export class StateTooNewError extends Error {
  override readonly name = "StateTooNewError";
  constructor(where: string, found: number, known: number) {
    super(
      `the ${where} is at schema version ${found}, newer than this sota-db knows (${known}): ` +
        "run the release that wrote it (or a newer one), or restore the state from before that upgrade",
    );
  }
}

/** The migrations still to apply on a state at `current`, in order. Throws StateTooNewError. */
export function pendingMigrations(current: number, migrations: readonly Migration[], where: string): readonly Migration[] {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) throw new Error(`migration ${index + 1} is numbered ${migration.version}`);
  });
  if (current > migrations.length) throw new StateTooNewError(where, current, migrations.length);
  return migrations.slice(current);
}

/** The schema version the code writes. */
export function latestVersion(migrations: readonly Migration[]): number {
  return migrations.length;
}
