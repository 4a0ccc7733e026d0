// The off-host copier's metrics, on the service's registry (src/metrics.ts):
// failures to alert on, what waits for a copy, and when a copy last worked.
// Labels are kinds of object only: no project, key or endpoint.
import { Counter, Gauge, type Registry } from "prom-client";

export type OffsiteObjectKind = "backup" | "wal" | "manifest" | "delete" | "download";

export class OffsiteMetrics {
  readonly failures: Counter<"kind">;
  readonly pending: Gauge;
  readonly lastSuccess: Gauge;
  readonly uploadedBytes: Counter;

  constructor(registry: Registry) {
    this.failures = new Counter({
      name: "sota_offsite_copy_failures_total",
      help: "Off-host copy operations that failed (each is retried with backoff), by kind: backup, wal, manifest, delete (retention), download (restore).",
      labelNames: ["kind"] as const,
      registers: [registry],
    });
    this.pending = new Gauge({
      name: "sota_offsite_pending_objects",
      help: "Backups not yet in the bucket, plus one per database whose WAL copy is failing, as of the copier's last pass.",
      registers: [registry],
    });
    this.lastSuccess = new Gauge({
      name: "sota_offsite_last_success_timestamp_seconds",
      help: "When an object (backup or WAL file) last reached the bucket.",
      registers: [registry],
    });
    this.uploadedBytes = new Counter({
      name: "sota_offsite_uploaded_bytes_total",
      help: "Encrypted bytes uploaded to the bucket.",
      registers: [registry],
    });
  }

  private last = 0;

  /** An object reached the bucket at `at` (the gauge never goes back: the state's newest copy sets it at start). */
  copied(at: Date, bytes = 0): void {
    this.last = Math.max(this.last, at.getTime() / 1000);
    this.lastSuccess.set(this.last);
    if (bytes > 0) this.uploadedBytes.inc(bytes);
  }
}
