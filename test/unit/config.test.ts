import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("loadConfig", () => {
  it("needs nothing: the embedded defaults", () => {
    const config = loadConfig({}, "/srv/sota");
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.dataDir).toBe("/srv/sota/data");
    expect(config.runtime).toBe("process");
    expect(config.masterKeyFile).toBe("/srv/sota/data/master.key");
    expect(config.masterKeyFileIsDefault).toBe(true);
    expect(config.process.poolerPorts).toEqual({ min: 16432, max: 17431 });
    expect(config.process).toMatchObject({ warmPool: 0, spareCopies: 1 });
    expect(config.docker.postgresMemoryMb).toBe(2048);
    expect(config.docker.pgbouncerUser).toBeUndefined();
    expect(config.limits).toEqual({ memoryMb: 2048, cpus: 1, pids: 512, shmMb: 256 });
    expect(config.stateUrl).toBeUndefined();
    expect(config.backup).toMatchObject({ dir: "/srv/sota/data/backups", retentionDays: 7, deletedRetentionDays: 30, concurrency: 2, verify: false });
    expect(config.http).toEqual({ maxConnections: 256, headerTimeoutMs: 10_000, idleTimeoutMs: 30_000 });
    expect(config.backup).toMatchObject({ manualLimit: { count: 6, windowMs: 3_600_000 }, loadConcurrency: 2, minFree: { percent: 5 } });
    expect(config.backup.offsite).toBeUndefined();
  });

  it("reads every variable", () => {
    const key = randomBytes(32).toString("base64");
    const config = loadConfig(
      {
        SOTA_LISTEN: "[::1]:9090",
        SOTA_DATA_DIR: "/var/lib/sota",
        SOTA_RUNTIME: "docker",
        SOTA_MASTER_KEY: `${key}, ${key}`,
        SOTA_POOLER_PORTS: "20000-20010",
        SOTA_WARM_POOL: "2",
        SOTA_SPARE_COPIES: "3",
        SOTA_DOCKER_NETWORK: "per-project",
        SOTA_PGBOUNCER_USER: "70:70",
        SOTA_DOCKER_PUBLISH_HOST: "127.0.0.1",
        SOTA_DOCKER_POSTGRES_MEMORY_MB: "0",
        DOCKER_HOST: "unix:///run/docker.sock",
        SOTA_BACKUP_SCHEDULE: "*/5 * * * *",
        SOTA_BACKUP_RETENTION_DAYS: "14",
        SOTA_DELETED_RETENTION_DAYS: "90",
        SOTA_BACKUP_VERIFY: "true",
        SOTA_MAX_CONNECTIONS: "50",
        SOTA_HTTP_HEADER_TIMEOUT_MS: "5000",
        SOTA_HTTP_IDLE_TIMEOUT_MS: "120000",
        SOTA_BACKUP_MANUAL_LIMIT: "3 / 30m",
        SOTA_BACKUP_LOAD_CONCURRENCY: "1",
        SOTA_BACKUP_MIN_FREE: "2GiB",
        SOTA_STATE_URL: "postgres://sota:s3cret@db.internal:5432/sota",
      },
      "/",
    );
    expect(config.listen).toEqual({ host: "::1", port: 9090 });
    expect(config.runtime).toBe("docker");
    expect(config.stateUrl).toBe("postgres://sota:s3cret@db.internal:5432/sota");
    expect(config.masterKeys).toEqual([key, key]);
    expect(config.process).toMatchObject({ poolerPorts: { min: 20000, max: 20010 }, warmPool: 2, spareCopies: 3 });
    expect(config.docker).toMatchObject({
      network: "per-project",
      pgbouncerUser: "70:70",
      publishHost: "127.0.0.1",
      host: "unix:///run/docker.sock",
      postgresMemoryMb: 0,
    });
    expect(config.backup).toMatchObject({ schedule: "*/5 * * * *", retentionDays: 14, deletedRetentionDays: 90, verify: true });
    expect(config.http).toEqual({ maxConnections: 50, headerTimeoutMs: 5000, idleTimeoutMs: 120_000 });
    expect(config.backup).toMatchObject({ manualLimit: { count: 3, windowMs: 1_800_000 }, loadConcurrency: 1, minFree: { bytes: 2 * 1024 ** 3 } });
  });

  it("takes SOTA_PGBOUNCER_USER as a name or uid, with an optional group", () => {
    for (const user of ["postgres", "1001", "postgres:postgres", "70:70"]) {
      expect(loadConfig({ SOTA_PGBOUNCER_USER: user }, "/").docker.pgbouncerUser).toBe(user);
    }
  });

  it("reads the databases' resource limits, and the Docker memory limit's earlier name", () => {
    const limits = (env: Record<string, string>) => loadConfig(env, "/").limits;
    expect(limits({ SOTA_DB_MEMORY_MB: "128", SOTA_DB_CPUS: "0.5", SOTA_DB_PIDS: "100", SOTA_DB_SHM_MB: "64" })).toEqual({
      memoryMb: 128,
      cpus: 0.5,
      pids: 100,
      shmMb: 64,
    });
    expect(limits({ SOTA_DB_MEMORY_MB: "0", SOTA_DB_CPUS: "0", SOTA_DB_PIDS: "0", SOTA_DB_SHM_MB: "0" })).toEqual({
      memoryMb: 0,
      cpus: 0,
      pids: 0,
      shmMb: 0,
    });
    expect(limits({ SOTA_DOCKER_POSTGRES_MEMORY_MB: "512" }).memoryMb).toBe(512);
    expect(loadConfig({}, "/").sizeQuotaMb).toBe(0);
    expect(loadConfig({ SOTA_DB_SIZE_QUOTA_MB: "10240" }, "/").sizeQuotaMb).toBe(10240);
    expect(() => loadConfig({ SOTA_DB_SIZE_QUOTA_MB: "10G" }, "/")).toThrow(/^SOTA_DB_SIZE_QUOTA_MB: must be a whole number/);
    expect(limits({ SOTA_DOCKER_POSTGRES_MEMORY_MB: "512", SOTA_DB_MEMORY_MB: "256" }).memoryMb).toBe(256);
    expect(loadConfig({ SOTA_DB_MEMORY_MB: "300" }, "/").docker.postgresMemoryMb).toBe(300);
    expect(() => limits({ SOTA_DB_MEMORY_MB: "32" })).toThrow(/^SOTA_DB_MEMORY_MB: must be 0 \(no limit\) or from 64/);
    for (const bad of ["-1", "1.234", "2k", "0.001", "2000"]) {
      expect(() => limits({ SOTA_DB_CPUS: bad })).toThrow(/^SOTA_DB_CPUS: must be 0 \(no limit\) or a number of CPUs/);
    }
    expect(() => limits({ SOTA_DB_PIDS: "many" })).toThrow(/^SOTA_DB_PIDS: must be a whole number/);
    expect(() => limits({ SOTA_DB_SHM_MB: "1.5" })).toThrow(/^SOTA_DB_SHM_MB: must be a whole number/);
  });

  it("reads the backup limits' other forms", () => {
    const backup = (env: Record<string, string>) => loadConfig(env, "/").backup;
    expect(backup({ SOTA_BACKUP_MANUAL_LIMIT: "off" }).manualLimit).toBeUndefined();
    expect(backup({ SOTA_BACKUP_MANUAL_LIMIT: "10/1d" }).manualLimit).toEqual({ count: 10, windowMs: 86_400_000 });
    expect(backup({ SOTA_BACKUP_MIN_FREE: "12.5%" }).minFree).toEqual({ percent: 12.5 });
    expect(backup({ SOTA_BACKUP_MIN_FREE: "0" }).minFree).toEqual({ bytes: 0 });
    expect(backup({ SOTA_BACKUP_MIN_FREE: "512M" }).minFree).toEqual({ bytes: 512 * 1024 ** 2 });
    expect(backup({ SOTA_BACKUP_MIN_FREE: "1048576" }).minFree).toEqual({ bytes: 1048576 });
  });

  it("refuses a state URL that is not PostgreSQL's without repeating it (it may hold a password)", () => {
    for (const value of ["mysql://sota:hunter2@db/sota", "hunter2", "postgres://:hunter2@/"]) {
      let error: unknown;
      try {
        loadConfig({ SOTA_STATE_URL: value }, "/");
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/^SOTA_STATE_URL: must be a PostgreSQL URL/);
      expect((error as Error).message).not.toContain("hunter2");
    }
    expect(loadConfig({ SOTA_STATE_URL: "postgresql://sota@127.0.0.1/sota" }, "/").stateUrl).toBe("postgresql://sota@127.0.0.1/sota");
    expect(loadConfig({ SOTA_STATE_URL: "postgres:///sota?host=/run/postgresql" }, "/").stateUrl).toBe("postgres:///sota?host=/run/postgresql");
  });

  it("names the variable and what it allows", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ SOTA_LISTEN: "8080" }, /^SOTA_LISTEN: must be host:port/],
      [{ SOTA_RUNTIME: "k8s" }, /^SOTA_RUNTIME: must be one of process, docker/],
      [{ SOTA_POOLER_PORTS: "100-50" }, /^SOTA_POOLER_PORTS: /],
      [{ SOTA_MASTER_KEY: "short" }, /^SOTA_MASTER_KEY: must be base64 of 32 bytes/],
      [{ SOTA_READY_TIMEOUT_MS: "soon" }, /^SOTA_READY_TIMEOUT_MS: must be a whole number/],
      [{ SOTA_BACKUP_SCHEDULE: "every day" }, /^SOTA_BACKUP_SCHEDULE: must be a cron expression/],
      [{ SOTA_BACKUP_VERIFY: "maybe" }, /^SOTA_BACKUP_VERIFY: must be true or false/],
      [{ SOTA_WARM_POOL: "-1" }, /^SOTA_WARM_POOL: must be a whole number from 0 to 64/],
      [{ SOTA_SPARE_COPIES: "2.5" }, /^SOTA_SPARE_COPIES: must be a whole number from 0 to 64/],
      [{ SOTA_DOCKER_PUBLISH_HOST: "localhost" }, /^SOTA_DOCKER_PUBLISH_HOST: /],
      [{ SOTA_PGBOUNCER_USER: "root" }, /^SOTA_PGBOUNCER_USER: must not be root/],
      [{ SOTA_PGBOUNCER_USER: "0:0" }, /^SOTA_PGBOUNCER_USER: must not be root/],
      [{ SOTA_PGBOUNCER_USER: "pg bouncer" }, /^SOTA_PGBOUNCER_USER: must be an OS user name or uid/],
      [{ DOCKER_HOST: "ssh://me@host" }, /^DOCKER_HOST: must be unix:/],
      [{ SOTA_DOCKER_POSTGRES_MEMORY_MB: "32" }, /^SOTA_DOCKER_POSTGRES_MEMORY_MB: must be 0 \(no limit\) or from 64/],
      [{ SOTA_DOCKER_POSTGRES_MEMORY_MB: "2g" }, /^SOTA_DOCKER_POSTGRES_MEMORY_MB: must be a whole number/],
      [{ SOTA_TLS_CERT_FILE: "/x.pem" }, /^SOTA_TLS_KEY_FILE: /],
      [{ SOTA_MAX_CONNECTIONS: "0" }, /^SOTA_MAX_CONNECTIONS: must be a whole number from 1 to 65535/],
      [{ SOTA_HTTP_HEADER_TIMEOUT_MS: "100" }, /^SOTA_HTTP_HEADER_TIMEOUT_MS: must be a whole number from 1000 to 300000/],
      [{ SOTA_HTTP_IDLE_TIMEOUT_MS: "forever" }, /^SOTA_HTTP_IDLE_TIMEOUT_MS: must be a whole number/],
      [{ SOTA_BACKUP_MANUAL_LIMIT: "6" }, /^SOTA_BACKUP_MANUAL_LIMIT: must be COUNT\/DURATION/],
      [{ SOTA_BACKUP_MANUAL_LIMIT: "0/1h" }, /^SOTA_BACKUP_MANUAL_LIMIT: /],
      [{ SOTA_BACKUP_MANUAL_LIMIT: "6/1w" }, /^SOTA_BACKUP_MANUAL_LIMIT: /],
      [{ SOTA_BACKUP_MANUAL_LIMIT: "6/0s" }, /^SOTA_BACKUP_MANUAL_LIMIT: /],
      [{ SOTA_BACKUP_MANUAL_LIMIT: "6/31d" }, /^SOTA_BACKUP_MANUAL_LIMIT: /],
      [{ SOTA_DELETED_RETENTION_DAYS: "0" }, /^SOTA_DELETED_RETENTION_DAYS: must be a whole number from 1 to 3650/],
      [{ SOTA_BACKUP_LOAD_CONCURRENCY: "0" }, /^SOTA_BACKUP_LOAD_CONCURRENCY: must be a whole number from 1 to 64/],
      [{ SOTA_BACKUP_MIN_FREE: "100%" }, /^SOTA_BACKUP_MIN_FREE: must be a percentage below 100/],
      [{ SOTA_BACKUP_MIN_FREE: "-5%" }, /^SOTA_BACKUP_MIN_FREE: /],
      [{ SOTA_BACKUP_MIN_FREE: "lots" }, /^SOTA_BACKUP_MIN_FREE: /],
      [{ SOTA_BACKUP_MIN_FREE: "5P" }, /^SOTA_BACKUP_MIN_FREE: /],
    ];
    for (const [env, message] of cases) {
      expect(() => loadConfig(env, "/")).toThrow(ConfigError);
      expect(() => loadConfig(env, "/")).toThrow(message);
    }
  });

  describe("off-host copies (SOTA_BACKUP_S3_*)", () => {
    const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const complete = {
      SOTA_BACKUP_S3_ENDPOINT: "http://127.0.0.1:9000/",
      SOTA_BACKUP_S3_BUCKET: "sota-backups",
      SOTA_BACKUP_S3_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
      SOTA_BACKUP_S3_SECRET_ACCESS_KEY: SECRET,
    };

    it("reads the four required ones with the defaults of the others", () => {
      expect(loadConfig(complete, "/").backup.offsite).toEqual({
        endpoint: "http://127.0.0.1:9000",
        bucket: "sota-backups",
        prefix: "sota-db",
        region: "us-east-1",
        accessKeyId: "AKIAIOSFODNN7EXAMPLE",
        secretAccessKey: SECRET,
        forcePathStyle: false,
        syncIntervalMs: 60_000,
        recoverOnEnsure: true,
      });
    });

    it("reads the optional ones", () => {
      const offsite = loadConfig(
        {
          ...complete,
          SOTA_BACKUP_S3_PREFIX: "/prod/eu-1/",
          SOTA_BACKUP_S3_REGION: "eu-west-1",
          SOTA_BACKUP_S3_FORCE_PATH_STYLE: "true",
          SOTA_BACKUP_S3_SYNC_SECONDS: "5",
          SOTA_BACKUP_S3_RECOVER_ON_ENSURE: "false",
        },
        "/",
      ).backup.offsite;
      expect(offsite).toMatchObject({ prefix: "prod/eu-1", region: "eu-west-1", forcePathStyle: true, syncIntervalMs: 5_000, recoverOnEnsure: false });
    });

    it("is all or nothing: any one set needs the endpoint, the bucket and both keys", () => {
      const { SOTA_BACKUP_S3_SECRET_ACCESS_KEY: _secret, ...withoutSecret } = complete;
      expect(() => loadConfig(withoutSecret, "/")).toThrow(/^SOTA_BACKUP_S3_SECRET_ACCESS_KEY: off-host copies need .*missing: SOTA_BACKUP_S3_SECRET_ACCESS_KEY/);
      expect(() => loadConfig({ SOTA_BACKUP_S3_PREFIX: "x" }, "/")).toThrow(/^SOTA_BACKUP_S3_ENDPOINT: off-host copies need/);
      // The recovery switch means nothing without a bucket: said, not ignored.
      expect(() => loadConfig({ SOTA_BACKUP_S3_RECOVER_ON_ENSURE: "false" }, "/")).toThrow(/^SOTA_BACKUP_S3_ENDPOINT: off-host copies need/);
      // The error names what is set and missing, never a value.
      try {
        loadConfig({ SOTA_BACKUP_S3_SECRET_ACCESS_KEY: SECRET }, "/");
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toContain("set: SOTA_BACKUP_S3_SECRET_ACCESS_KEY");
        expect((error as Error).message).not.toContain(SECRET);
      }
    });

    it("names the variable and what it allows, without repeating a key or credentials", () => {
      const cases: [Record<string, string>, RegExp][] = [
        [{ SOTA_BACKUP_S3_ENDPOINT: "ftp://host" }, /^SOTA_BACKUP_S3_ENDPOINT: must be an http:\/\/ or https:\/\/ URL/],
        [{ SOTA_BACKUP_S3_ENDPOINT: "not a url" }, /^SOTA_BACKUP_S3_ENDPOINT: /],
        [{ SOTA_BACKUP_S3_ENDPOINT: `http://AKID:${SECRET}@host:9000` }, /^SOTA_BACKUP_S3_ENDPOINT: .*without credentials/],
        [{ SOTA_BACKUP_S3_ENDPOINT: "https://host/?X-Amz-Credential=x" }, /^SOTA_BACKUP_S3_ENDPOINT: /],
        [{ SOTA_BACKUP_S3_BUCKET: "My_Bucket" }, /^SOTA_BACKUP_S3_BUCKET: must be a bucket name/],
        [{ SOTA_BACKUP_S3_BUCKET: "ab" }, /^SOTA_BACKUP_S3_BUCKET: /],
        [{ SOTA_BACKUP_S3_BUCKET: "192.168.1.1" }, /^SOTA_BACKUP_S3_BUCKET: /],
        [{ SOTA_BACKUP_S3_PREFIX: "a/../b" }, /^SOTA_BACKUP_S3_PREFIX: must be a key prefix/],
        [{ SOTA_BACKUP_S3_PREFIX: "a b" }, /^SOTA_BACKUP_S3_PREFIX: /],
        [{ SOTA_BACKUP_S3_PREFIX: "/" }, /^SOTA_BACKUP_S3_PREFIX: /],
        [{ SOTA_BACKUP_S3_REGION: "EU West" }, /^SOTA_BACKUP_S3_REGION: /],
        [{ SOTA_BACKUP_S3_FORCE_PATH_STYLE: "sometimes" }, /^SOTA_BACKUP_S3_FORCE_PATH_STYLE: must be true or false/],
        [{ SOTA_BACKUP_S3_SYNC_SECONDS: "0" }, /^SOTA_BACKUP_S3_SYNC_SECONDS: must be a whole number from 1 to 3600/],
        [{ SOTA_BACKUP_S3_RECOVER_ON_ENSURE: "maybe" }, /^SOTA_BACKUP_S3_RECOVER_ON_ENSURE: must be true or false/],
        [{ SOTA_BACKUP_S3_SECRET_ACCESS_KEY: `${SECRET} trailing words` }, /^SOTA_BACKUP_S3_SECRET_ACCESS_KEY: .*\(the value is not shown\)/],
        [{ SOTA_BACKUP_S3_ACCESS_KEY_ID: "x".repeat(129) }, /^SOTA_BACKUP_S3_ACCESS_KEY_ID: /],
      ];
      for (const [env, message] of cases) {
        let error: unknown;
        try {
          loadConfig({ ...complete, ...env }, "/");
        } catch (thrown) {
          error = thrown;
        }
        expect(error, JSON.stringify(env)).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toMatch(message);
        expect((error as Error).message).not.toContain(SECRET);
      }
    });
  });
});
