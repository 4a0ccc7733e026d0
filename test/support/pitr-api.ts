// What the point-in-time tests share: REST calls against a harness, waiting
// (bounded) for a database's recovery window or a new base backup, and times
// taken from PostgreSQL's own clock between two commits.
import { setTimeout as sleep } from "node:timers/promises";
import type { Harness } from "./app-harness.js";
import { queryUrl } from "./url-query.js";

export { connectClient, connectCode } from "./connect-client.js";

export interface RestAnswer {
  readonly status: number;
  readonly json: any;
  readonly text: string;
}

export interface RestOptions {
  readonly method?: string;
  /** Default: the admin token. */
  readonly token?: string;
  /** Sent as JSON (a string as it is). */
  readonly body?: unknown;
}

export async function rest(h: Harness, path: string, options: RestOptions = {}): Promise<RestAnswer> {
  const response = await fetch(`${h.app.url}${path}`, {
    method: options.method ?? "GET",
    headers: { authorization: `Bearer ${options.token ?? h.tokens.admin}`, ...(options.body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(options.body !== undefined ? { body: typeof options.body === "string" ? options.body : JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text };
}

/** Polls until `check` answers a value (bounded: a base backup of a small database takes seconds). */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, withinMs = 120_000): Promise<T> {
  const until = Date.now() + withinMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
    await sleep(250);
  }
}

/** The database's recovery window once it has one (its first base backup finished). */
export function windowOf(h: Harness, projectId: string): Promise<{ earliestTime: string; latestTime: string; streaming: boolean }> {
  return eventually(`the recovery window of ${projectId}`, async () => (await rest(h, `/v1/projects/${projectId}/database`)).json?.recoveryWindow);
}

/** A succeeded base backup started after `after` (a backup id or time), once there is one. */
export function baseBackupAfter(h: Harness, projectId: string, after: Date): Promise<any> {
  return eventually(`a base backup of ${projectId} after ${after.toISOString()}`, async () => {
    const { backups } = (await rest(h, `/v1/projects/${projectId}/database/backups`)).json;
    return backups.find(
      (backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.state === "BACKUP_STATE_SUCCEEDED" && new Date(backup.startTime) > after,
    );
  });
}

export async function connectionUrl(h: Harness, projectId: string): Promise<string> {
  return (await h.app.service.connection(projectId)).url;
}

/**
 * Runs `sql` as the app, then returns PostgreSQL's clock a few milliseconds
 * after its commit: a time between it and whatever is committed next
 * (recovery targets carry milliseconds, so the commit's millisecond must be past).
 */
export async function commitThenTime(url: string, sql: string): Promise<Date> {
  await queryUrl(url, sql);
  await sleep(20);
  const { rows } = await queryUrl(url, "SELECT clock_timestamp() AS now");
  await sleep(20);
  return rows[0].now as Date;
}

export async function numbers(url: string, table = "events"): Promise<number[]> {
  return (await queryUrl(url, `SELECT n FROM ${table} ORDER BY n`)).rows.map((row) => row.n as number);
}

/** rest() that keeps every answer's text in `answers`, for the check that none holds a secret. */
export function recordingRest(h: () => Harness, answers: string[]): (path: string, options?: RestOptions) => Promise<RestAnswer> {
  return async (path, options = {}) => {
    const answer = await rest(h(), path, options);
    answers.push(answer.text);
    return answer;
  };
}
