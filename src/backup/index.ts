// The backup subsystem's public face: the manager behind the Backups port.
export { createBackupManager, BackupManager, type BackupManagerOptions, type BackupScheduleOptions } from "./backup-manager.js";
export type { Backups, BackupDownload } from "./backups.js";
