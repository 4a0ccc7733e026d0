// Environment → typed, validated configuration. A bad value stops the service
// with one line that names the variable and what it allows.
import { resolve, join } from "node:path";
import { Cron } from "croner";
import type { FreeSpaceReserve } from "./backup/free-space.js";
import type { RollingLimit } from "./backup/manual-backup-limit.js";
import type { OffsiteConfig } from "./offsite/offsite-config.js";
import { RUNTIME_KINDS, type RuntimeKind } from "./runtime/registry.js";
import type { ResourceLimits } from "./runtime/shared/resource-limits.js";

export type { RuntimeKind };

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  /** Bounds on the API port's connections (see src/server/connection-limits.ts). */
  readonly http: {
    /** Connections open at once; more are closed as they arrive. */
    readonly maxConnections: number;
    /** Time a new connection has to send a complete request head (TLS handshake, HTTP/1 headers, HTTP/2 preface and first request). */
    readonly headerTimeoutMs: number;
    /** Time a connection with no request in flight is kept open (HTTP/1 keep-alive, HTTP/2 session without a stream). */
    readonly idleTimeoutMs: number;
  };
  readonly dataDir: string;
  /** SOTA_STATE_URL: a postgres:// URL selects the PostgreSQL state store; absent, SQLite in the data dir. A secret. */
  readonly stateUrl?: string;
  readonly logLevel: string;
  readonly runtime: RuntimeKind;
  /** Deadline for a database to answer a real query through its pooler. */
  readonly readyTimeoutMs: number;
  readonly tokensFile?: string;
  /** PEM files; both set: the API port speaks TLS. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly masterKeys?: readonly string[];
  readonly masterKeyFile: string;
  /** True when the key file path is the default one, which may be created. */
  readonly masterKeyFileIsDefault: boolean;
  /**
   * Every database's resource limits unless its project overrides them: the
   * process runtime through cgroups, the Docker runtime through the containers'.
   */
  readonly limits: ResourceLimits;
  /** Every database's size quota in MiB unless its project overrides it; 0: none. Reported when exceeded, never enforced. */
  readonly sizeQuotaMb: number;
  readonly process: {
    readonly pgBinDir?: string;
    readonly pgbouncerBin?: string;
    /**
     * With the service as root: one OS user every database runs as (as before
     * per-database users); unset, each database gets an OS user of its own.
     */
    readonly runAsUser?: string;
    readonly poolerPorts: { readonly min: number; readonly max: number };
    /** Started, unassigned instances kept ready so a new database needs no cold start. */
    readonly warmPool: number;
    /** Flushed copies of the template kept on disk so a new database needs no copy. */
    readonly spareCopies: number;
  };
  readonly docker: {
    /** DOCKER_HOST: unix:///path or tcp://host:port; default the local socket. */
    readonly host?: string;
    readonly postgresImage: string;
    readonly pgbouncerImage: string;
    /** OS user (name or uid, optionally :group) PgBouncer runs as; unset: the image's own USER, else "pgbouncer". */
    readonly pgbouncerUser?: string;
    readonly network: string;
    readonly publishHost?: string;
    /** Memory limit of each PostgreSQL container in MiB, swap included; 0: none (limits.memoryMb). */
    readonly postgresMemoryMb: number;
  };
  readonly backup: {
    readonly dir: string;
    readonly schedule: string;
    readonly retentionDays: number;
    /** Days a deleted database's backups (its final one included) stay listed and downloadable after the delete. */
    readonly deletedRetentionDays: number;
    readonly concurrency: number;
    readonly verify: boolean;
    /** Manual backups (and restores, each of which writes a safety backup) a project token may start per window; absent: no limit. */
    readonly manualLimit?: RollingLimit;
    /** Verifications and restores loading a scratch copy at once, over all projects. */
    readonly loadConcurrency: number;
    /** Free space every backup, verification and restore leaves on its file system. */
    readonly minFree: FreeSpaceReserve;
    /** Encrypted copies in S3-compatible object storage (SOTA_BACKUP_S3_*); absent: backups stay on this host only. */
    readonly offsite?: OffsiteConfig;
  };
}



export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly variable: string, allowed: string) {
    super(`${variable}: ${allowed}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const dataDir = resolve(cwd, text(env, "SOTA_DATA_DIR") ?? "./data");
  const keyFile = text(env, "SOTA_MASTER_KEY_FILE");
  const masterKey = text(env, "SOTA_MASTER_KEY");
  const tokensFile = text(env, "SOTA_TOKENS_FILE");
  const pgBinDir = text(env, "SOTA_PG_BIN_DIR");
  const pgbouncerBin = text(env, "SOTA_PGBOUNCER_BIN");
  const runAsUser = text(env, "SOTA_RUN_AS_USER");
  const publishHost = text(env, "SOTA_DOCKER_PUBLISH_HOST");
  const pgbouncerUser = text(env, "SOTA_PGBOUNCER_USER");
  const tlsCert = text(env, "SOTA_TLS_CERT_FILE");
  const tlsKey = text(env, "SOTA_TLS_KEY_FILE");
  const stateUrl = text(env, "SOTA_STATE_URL");
  const limits = resourceLimits(env);
  if (Boolean(tlsCert) !== Boolean(tlsKey)) {
    throw new ConfigError(tlsCert ? "SOTA_TLS_KEY_FILE" : "SOTA_TLS_CERT_FILE", "SOTA_TLS_CERT_FILE and SOTA_TLS_KEY_FILE go together: set both or neither");
  }
  return {
    listen: hostPort(env, "SOTA_LISTEN", "127.0.0.1:8080"),
    http: {
      maxConnections: integer(env, "SOTA_MAX_CONNECTIONS", 256, 1, 65_535),
      headerTimeoutMs: integer(env, "SOTA_HTTP_HEADER_TIMEOUT_MS", 10_000, 1_000, 300_000),
      idleTimeoutMs: integer(env, "SOTA_HTTP_IDLE_TIMEOUT_MS", 30_000, 1_000, 3_600_000),
    },
    dataDir,
    ...(stateUrl ? { stateUrl: postgresUrl(stateUrl, "SOTA_STATE_URL") } : {}),
    logLevel: oneOf(env, "SOTA_LOG_LEVEL", ["trace", "debug", "info", "warn", "error", "fatal", "silent"], "info"),
    runtime: oneOf(env, "SOTA_RUNTIME", RUNTIME_KINDS, "process"),
    readyTimeoutMs: integer(env, "SOTA_READY_TIMEOUT_MS", 60_000, 1_000, 600_000),
    ...(tokensFile ? { tokensFile: resolve(cwd, tokensFile) } : {}),
    ...(tlsCert && tlsKey ? { tls: { certFile: resolve(cwd, tlsCert), keyFile: resolve(cwd, tlsKey) } } : {}),
    ...(masterKey ? { masterKeys: masterKeys(masterKey) } : {}),
    masterKeyFile: keyFile ? resolve(cwd, keyFile) : join(dataDir, "master.key"),
    masterKeyFileIsDefault: !keyFile,
    limits,
    sizeQuotaMb: integer(env, "SOTA_DB_SIZE_QUOTA_MB", 0, 0, 1_073_741_824),
    process: {
      ...(pgBinDir ? { pgBinDir: resolve(cwd, pgBinDir) } : {}),
      ...(pgbouncerBin ? { pgbouncerBin: resolve(cwd, pgbouncerBin) } : {}),
      ...(runAsUser ? { runAsUser: identifier(runAsUser, "SOTA_RUN_AS_USER") } : {}),
      poolerPorts: portRange(env, "SOTA_POOLER_PORTS", "16432-17431"),
      warmPool: integer(env, "SOTA_WARM_POOL", 0, 0, 64),
      spareCopies: integer(env, "SOTA_SPARE_COPIES", 1, 0, 64),
    },
    docker: {
      ...(dockerHost(text(env, "DOCKER_HOST")) ?? {}),
      postgresImage: text(env, "SOTA_POSTGRES_IMAGE") ?? "postgres:17",
      pgbouncerImage: text(env, "SOTA_PGBOUNCER_IMAGE") ?? "sota-db/pgbouncer:1.24-trixie",
      ...(pgbouncerUser ? { pgbouncerUser: containerUser(pgbouncerUser, "SOTA_PGBOUNCER_USER") } : {}),
      network: dockerNetwork(text(env, "SOTA_DOCKER_NETWORK") ?? "traefik-public"),
      ...(publishHost ? { publishHost: publishAddress(publishHost) } : {}),
      postgresMemoryMb: limits.memoryMb,
    },
    backup: {
      dir: resolve(cwd, text(env, "SOTA_BACKUP_DIR") ?? join(dataDir, "backups")),
      schedule: cron(env, "SOTA_BACKUP_SCHEDULE", "0 3 * * *"),
      retentionDays: integer(env, "SOTA_BACKUP_RETENTION_DAYS", 7, 1, 3650),
      deletedRetentionDays: integer(env, "SOTA_DELETED_RETENTION_DAYS", 30, 1, 3650),
      concurrency: integer(env, "SOTA_BACKUP_CONCURRENCY", 2, 1, 64),
      verify: boolean(env, "SOTA_BACKUP_VERIFY", false),
      ...manualBackupLimit(env, "SOTA_BACKUP_MANUAL_LIMIT", "6/1h"),
      loadConcurrency: integer(env, "SOTA_BACKUP_LOAD_CONCURRENCY", 2, 1, 64),
      minFree: freeSpaceReserve(env, "SOTA_BACKUP_MIN_FREE", "5%"),
      ...offsiteStorage(env),
    },
  };
}

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = text(env, name);
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(name, `must be one of ${allowed.join(", ")}`);
  return value as T;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = text(env, name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}`);
  }
  return Number(value);
}

/** 0 turns the limit off; below 64 MiB PostgreSQL does not start. */
function memoryMb(env: Env, name: string, fallback: number): number {
  const value = integer(env, name, fallback, 0, 1_048_576);
  if (value > 0 && value < 64) throw new ConfigError(name, "must be 0 (no limit) or from 64 to 1048576");
  return value;
}

/**
 * SOTA_DB_MEMORY_MB (SOTA_DOCKER_POSTGRES_MEMORY_MB, its earlier name, still
 * read when it is unset), SOTA_DB_CPUS, SOTA_DB_PIDS and SOTA_DB_SHM_MB; 0
 * turns each off. The pids default leaves room for max_connections backends,
 * background and parallel workers, PgBouncer and the service's own sessions.
 */
function resourceLimits(env: Env): ResourceLimits {
  const memoryName = text(env, "SOTA_DB_MEMORY_MB") === undefined && text(env, "SOTA_DOCKER_POSTGRES_MEMORY_MB") !== undefined
    ? "SOTA_DOCKER_POSTGRES_MEMORY_MB"
    : "SOTA_DB_MEMORY_MB";
  const shmMb = integer(env, "SOTA_DB_SHM_MB", 256, 0, 1_048_576);
  return {
    memoryMb: memoryMb(env, memoryName, 2048),
    cpus: cpus(env, "SOTA_DB_CPUS", 1),
    pids: integer(env, "SOTA_DB_PIDS", 512, 0, 4_194_304),
    shmMb,
  };
}

/** CPUs' worth of time: 0 (no limit) or 0.01 to 1024, at most two decimals. */
function cpus(env: Env, name: string, fallback: number): number {
  const value = text(env, name);
  if (value === undefined) return fallback;
  if (!/^\d+(\.\d{1,2})?$/.test(value) || Number(value) > 1024 || (Number(value) > 0 && Number(value) < 0.01)) {
    throw new ConfigError(name, "must be 0 (no limit) or a number of CPUs from 0.01 to 1024, such as 0.5 or 2");
  }
  return Number(value);
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const value = text(env, name);
  if (value === undefined) return fallback;
  if (["1", "true", "yes", "on"].includes(value.toLowerCase())) return true;
  if (["0", "false", "no", "off"].includes(value.toLowerCase())) return false;
  throw new ConfigError(name, "must be true or false");
}

function hostPort(env: Env, name: string, fallback: string): { host: string; port: number } {
  const value = text(env, name) ?? fallback;
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new ConfigError(name, "must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free one)");
  return { host: match[1] ?? match[2]!, port };
}

function portRange(env: Env, name: string, fallback: string): { min: number; max: number } {
  const value = text(env, name) ?? fallback;
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(value);
  const min = Number(match?.[1]);
  const max = Number(match?.[2]);
  if (!match || min < 1024 || max > 65535 || min > max) {
    throw new ConfigError(name, "must be a port range MIN-MAX within 1024-65535, e.g. 16432-17431");
  }
  return { min, max };
}

function masterKeys(value: string): string[] {
  const keys = value.split(",").map((key) => key.trim()).filter(Boolean);
  for (const key of keys) {
    if (Buffer.from(key, "base64").length !== 32) {
      throw new ConfigError("SOTA_MASTER_KEY", "must be base64 of 32 bytes (several comma-separated, newest first)");
    }
  }
  return keys;
}

/** A postgres:// or postgresql:// URL with a host (or ?host=/socket/dir). The value is a secret: the error never repeats it. */
function postgresUrl(value: string, name: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || !["postgres:", "postgresql:"].includes(url.protocol) || !(url.hostname || url.searchParams.get("host"))) {
    throw new ConfigError(name, "must be a PostgreSQL URL, postgres://user:password@host:port/database (the value is not shown: it may hold a password)");
  }
  return value;
}

function identifier(value: string, name: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(value)) throw new ConfigError(name, "must be an OS user name");
  return value;
}

/** A container's user as Docker takes it: name or uid, optionally :group or :gid; never root (PgBouncer refuses it). */
function containerUser(value: string, name: string): string {
  const part = "(?:[a-z_][a-z0-9_-]{0,31}|\\d{1,10})";
  if (!new RegExp(`^${part}(?::${part})?$`).test(value)) {
    throw new ConfigError(name, 'must be an OS user name or uid, optionally with ":group" or ":gid"');
  }
  const user = value.split(":")[0];
  if (user === "root" || user === "0") throw new ConfigError(name, "must not be root: PgBouncer refuses to run as root");
  return value;
}

function dockerNetwork(value: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(value)) {
    throw new ConfigError("SOTA_DOCKER_NETWORK", 'must be a Docker network name, or "per-project"');
  }
  return value;
}

function dockerHost(value: string | undefined): { host: string } | undefined {
  if (value === undefined) return undefined;
  if (!/^(unix:\/\/\/\S+|tcp:\/\/[A-Za-z0-9.-]+:\d{1,5})$/.test(value)) {
    throw new ConfigError("DOCKER_HOST", "must be unix:///path/to/docker.sock or tcp://host:port (TLS engines are not supported)");
  }
  return { host: value };
}

function publishAddress(value: string): string {
  if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(value)) {
    throw new ConfigError("SOTA_DOCKER_PUBLISH_HOST", "must be an IPv4 address such as 127.0.0.1");
  }
  return value;
}

function cron(env: Env, name: string, fallback: string): string {
  const value = text(env, name) ?? fallback;
  try {
    // croner is the scheduler that will run it, so it is the judge of the syntax.
    new Cron(value, { paused: true }).stop();
  } catch {
    throw new ConfigError(name, 'must be a cron expression with 5 or 6 fields, e.g. "0 3 * * *"');
  }
  return value;
}

const WINDOW_UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "N/DURATION" (e.g. "6/1h": six per rolling hour), or "off". */
function manualBackupLimit(env: Env, name: string, fallback: string): { manualLimit?: RollingLimit } {
  const value = text(env, name) ?? fallback;
  if (value.toLowerCase() === "off") return {};
  const match = /^(\d{1,4})\s*\/\s*(\d{1,4})\s*([smhd])$/.exec(value);
  const count = Number(match?.[1]);
  const windowMs = Number(match?.[2]) * (WINDOW_UNIT_MS[match?.[3] ?? ""] ?? Number.NaN);
  if (!match || count < 1 || !(windowMs >= 1_000 && windowMs <= 30 * WINDOW_UNIT_MS["d"]!)) {
    throw new ConfigError(name, 'must be COUNT/DURATION with a unit s, m, h or d (e.g. "6/1h", up to 30d), or "off"');
  }
  return { manualLimit: { count, windowMs } };
}

const SIZE_UNIT_BYTES: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A percentage of the file system ("5%") or a size in bytes with an optional binary unit ("2G", "512M"). */
function freeSpaceReserve(env: Env, name: string, fallback: string): FreeSpaceReserve {
  const value = text(env, name) ?? fallback;
  const percent = /^(\d{1,2}(?:\.\d+)?)\s*%$/.exec(value);
  if (percent) return { percent: Number(percent[1]) };
  const size = /^(\d{1,16})\s*([kmgt]?)(?:i?b)?$/i.exec(value);
  const bytes = Number(size?.[1]) * (SIZE_UNIT_BYTES[size?.[2]?.toLowerCase() ?? ""] ?? Number.NaN);
  if (!size || !Number.isSafeInteger(bytes)) {
    throw new ConfigError(name, 'must be a percentage below 100 (e.g. "5%") or a size in bytes with an optional unit K, M, G or T (e.g. "2G")');
  }
  return { bytes };
}

const S3_REQUIRED = ["SOTA_BACKUP_S3_ENDPOINT", "SOTA_BACKUP_S3_BUCKET", "SOTA_BACKUP_S3_ACCESS_KEY_ID", "SOTA_BACKUP_S3_SECRET_ACCESS_KEY"] as const;
const S3_OPTIONAL = [
  "SOTA_BACKUP_S3_PREFIX",
  "SOTA_BACKUP_S3_REGION",
  "SOTA_BACKUP_S3_FORCE_PATH_STYLE",
  "SOTA_BACKUP_S3_SYNC_SECONDS",
  "SOTA_BACKUP_S3_RECOVER_ON_ENSURE",
] as const;

/**
 * Off-host copies: all or nothing. Any SOTA_BACKUP_S3_* set turns them on,
 * and then the endpoint, bucket and both keys must be set too; a half
 * configuration would let an operator believe backups leave the host when
 * they do not. Errors name the variable, never a key's value.
 */
export function offsiteStorage(env: Env): { offsite?: OffsiteConfig } {
  const set = [...S3_REQUIRED, ...S3_OPTIONAL].filter((name) => text(env, name) !== undefined);
  if (set.length === 0) return {};
  const missing = S3_REQUIRED.filter((name) => text(env, name) === undefined);
  if (missing.length > 0) {
    throw new ConfigError(missing[0]!, `off-host copies need ${S3_REQUIRED.join(", ")} together (set: ${set.join(", ")}; missing: ${missing.join(", ")})`);
  }
  return {
    offsite: {
      endpoint: s3Endpoint(text(env, "SOTA_BACKUP_S3_ENDPOINT")!),
      bucket: s3Bucket(text(env, "SOTA_BACKUP_S3_BUCKET")!),
      prefix: s3Prefix(text(env, "SOTA_BACKUP_S3_PREFIX") ?? "sota-db"),
      region: s3Region(text(env, "SOTA_BACKUP_S3_REGION") ?? "us-east-1"),
      accessKeyId: s3Key(text(env, "SOTA_BACKUP_S3_ACCESS_KEY_ID")!, "SOTA_BACKUP_S3_ACCESS_KEY_ID", 128),
      secretAccessKey: s3Key(text(env, "SOTA_BACKUP_S3_SECRET_ACCESS_KEY")!, "SOTA_BACKUP_S3_SECRET_ACCESS_KEY", 256),
      forcePathStyle: boolean(env, "SOTA_BACKUP_S3_FORCE_PATH_STYLE", false),
      syncIntervalMs: integer(env, "SOTA_BACKUP_S3_SYNC_SECONDS", 60, 1, 3600) * 1000,
      recoverOnEnsure: boolean(env, "SOTA_BACKUP_S3_RECOVER_ON_ENSURE", true),
    },
  };
}

/** http(s)://host[:port][/path], with no credentials, query or fragment in it (the error does not repeat the value). */
function s3Endpoint(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || !["http:", "https:"].includes(url.protocol) || !url.hostname || url.username || url.password || url.search || url.hash) {
    throw new ConfigError(
      "SOTA_BACKUP_S3_ENDPOINT",
      "must be an http:// or https:// URL of the S3-compatible service, e.g. https://s3.eu-west-1.amazonaws.com or http://minio.internal:9000, without credentials, query or fragment (keys go in SOTA_BACKUP_S3_ACCESS_KEY_ID and SOTA_BACKUP_S3_SECRET_ACCESS_KEY)",
    );
  }
  return value.replace(/\/+$/, "");
}

/** S3's bucket naming rules (the strict ones every S3-compatible server accepts). */
function s3Bucket(value: string): string {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(value) || value.includes("..") || /^\d+\.\d+\.\d+\.\d+$/.test(value)) {
    throw new ConfigError("SOTA_BACKUP_S3_BUCKET", "must be a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit");
  }
  return value;
}

/** Path segments of letters, digits, ".", "_" and "-", joined by "/"; surrounding slashes are dropped. */
function s3Prefix(value: string): string {
  const prefix = value.replace(/^\/+|\/+$/g, "");
  const segments = prefix.split("/");
  if (prefix.length === 0 || prefix.length > 200 || segments.some((segment) => !/^[A-Za-z0-9._-]+$/.test(segment) || segment === "." || segment === "..")) {
    throw new ConfigError("SOTA_BACKUP_S3_PREFIX", 'must be a key prefix such as "sota-db" or "backups/prod": segments of letters, digits, ".", "_" and "-" joined by "/", at most 200 characters');
  }
  return prefix;
}

function s3Region(value: string): string {
  if (!/^[a-z0-9-]{1,32}$/.test(value)) throw new ConfigError("SOTA_BACKUP_S3_REGION", 'must be a region name such as "us-east-1" (lowercase letters, digits and hyphens)');
  return value;
}

/** Printable ASCII without spaces. The value is never repeated: it may be the secret. */
function s3Key(value: string, name: string, maxLength: number): string {
  if (value.length > maxLength || !/^[\x21-\x7e]+$/.test(value)) {
    throw new ConfigError(name, `must be at most ${maxLength} printable ASCII characters without spaces (the value is not shown)`);
  }
  return value;
}
