// What a listing says about a backup's off-host copy (Backup.offsite).
import type { BackupRecord, OffsiteCopyState } from "../store/records.js";

export interface OffsiteCopyView {
  /** "disabled": no object storage is configured. */
  readonly state: OffsiteCopyState | "disabled";
  readonly copiedAt: Date | null;
  /** Why the last attempt failed; never holds a secret. */
  readonly error: string | null;
  readonly attempts: number;
}

/** A backup as ListBackups shows it: succeeded ones say where their off-host copy is. */
export type ListedBackup = BackupRecord & { readonly offsite?: OffsiteCopyView };

export const OFFSITE_DISABLED: OffsiteCopyView = { state: "disabled", copiedAt: null, error: null, attempts: 0 };
