// The settings of off-host copies (SOTA_BACKUP_S3_*), as config.ts validates
// them. The secret access key is the one secret here: it goes to the S3 client
// and nowhere else (no log line, error, metric or response carries it).

export interface OffsiteConfig {
  /** http(s)://host[:port] of the S3-compatible service (AWS: https://s3.{region}.amazonaws.com). */
  readonly endpoint: string;
  readonly bucket: string;
  /** Key prefix every object of this service lives under, without leading or trailing "/". */
  readonly prefix: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Bucket in the path (http://host/bucket/key), as MinIO and most self-hosted servers want; else virtual-hosted. */
  readonly forcePathStyle: boolean;
  /**
   * How often the copier looks for work: backups not copied yet or due for a
   * retry, new WAL, and the WAL segment still being written. It bounds the
   * off-host RPO (see docs/backups.md).
   */
  readonly syncIntervalMs: number;
  /**
   * Ensure of a project this service has no record of looks for it in the
   * bucket first and brings it back from there (disaster recovery); default
   * true. False (SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false) for a bucket gone
   * for good: Ensure then makes new databases without asking it.
   */
  readonly recoverOnEnsure?: boolean;
}
