// Which state store a row's service runs on: SQLite in the data dir (the
// embedded default, rows without a suffix) or PostgreSQL (SOTA_STATE_URL, rows
// suffixed "p"), so the two sit side by side in one table.
export interface StateStoreVariant {
  readonly idSuffix: string;
  /** Appended to the row's name. */
  readonly label: string;
}

export const SQLITE_STATE: StateStoreVariant = { idSuffix: "", label: "" };
export const POSTGRES_STATE: StateStoreVariant = { idSuffix: "p", label: ", PostgreSQL state store" };
