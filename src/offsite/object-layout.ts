// Where each off-host object lives in the bucket, under SOTA_BACKUP_S3_PREFIX:
//
//   {prefix}/{projectId}/manifest                         what the bucket holds for the project (encrypted JSON)
//   {prefix}/{projectId}/backups/{backupId}.{format}      a backup file: "dump" (.sql.gz) or "base" (pg_basebackup)
//   {prefix}/{projectId}/wal/{generation}/{segment}       a complete WAL segment or a timeline history file
//   {prefix}/{projectId}/wal/{generation}/{segment}.partial   the segment still being written, as of the last sync
//
// Every part of a key comes from a record the service wrote or from the
// runtime's WAL archive, never from a request; each is checked against its
// strict shape here anyway (a WAL file name is a file a tenant's server
// wrote), so no key can leave its project's prefix. The object's name (the key
// without the service prefix) is bound into its encryption: an object copied
// under another key does not decrypt.
import { isBackupId, isProjectId } from "../names.js";

/** A name that cannot become part of an object key. */
export class UnsafeObjectName extends Error {
  override readonly name = "UnsafeObjectName";
}

/** 24 hex digits (timeline, log, segment), a timeline history file, or the segment being written. */
const WAL_FILE = /^(?:[0-9A-F]{24}(?:\.partial)?|[0-9A-F]{8}\.history)$/;
/** A WAL generation id: sortable and path-safe (e.g. "20261130T120000Z"). */
const GENERATION = /^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$/;
const FORMAT = /^[a-z]{1,16}$/;

export const PARTIAL_SUFFIX = ".partial";

export interface ObjectRef {
  /** The bucket key. */
  readonly key: string;
  /** The key without the service prefix: bound into the object's encryption. */
  readonly name: string;
}

export class ObjectLayout {
  constructor(readonly prefix: string) {}

  manifest(projectId: string): ObjectRef {
    return this.ref(`${project(projectId)}/manifest`);
  }

  backup(projectId: string, backupId: string, format: string): ObjectRef {
    if (!isBackupId(backupId)) throw new UnsafeObjectName("not a backup id");
    if (!FORMAT.test(format)) throw new UnsafeObjectName("not a backup format");
    return this.ref(`${project(projectId)}/backups/${backupId}.${format}`);
  }

  wal(projectId: string, generation: string, file: string): ObjectRef {
    return this.ref(`${this.walName(projectId, generation)}/${walFile(file)}`);
  }

  /** "{prefix}/{projectId}/": every object of the project, for listing and deleting. */
  projectPrefix(projectId: string): string {
    return `${this.prefix}/${project(projectId)}/`;
  }

  /** "{prefix}/{projectId}/wal/{generation}/". */
  walPrefix(projectId: string, generation: string): string {
    return `${this.prefix}/${this.walName(projectId, generation)}/`;
  }

  private walName(projectId: string, generation: string): string {
    if (!GENERATION.test(generation)) throw new UnsafeObjectName("not a WAL generation id");
    return `${project(projectId)}/wal/${generation}`;
  }

  private ref(name: string): ObjectRef {
    return { key: `${this.prefix}/${name}`, name };
  }
}

export function isWalFileName(file: string): boolean {
  return WAL_FILE.test(file);
}

function walFile(file: string): string {
  if (!isWalFileName(file)) throw new UnsafeObjectName("not a WAL segment or history file name");
  return file;
}

function project(projectId: string): string {
  if (!isProjectId(projectId)) throw new UnsafeObjectName("not a project id");
  return projectId;
}
