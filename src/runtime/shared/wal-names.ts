// Names in a WAL archive, the same in both drivers: generation ids, and the
// file names PostgreSQL gives WAL segments and timeline history files. Every
// name that reaches a path is checked against these first.

/** A generation's id: the UTC second it was opened, e.g. 20261130T120000Z (sorts as it reads). */
export const GENERATION_ID = /^\d{8}T\d{6}Z$/;
/** A WAL segment: timeline, then the segment number in two halves, 8 hex digits each. */
export const SEGMENT_NAME = /^[0-9A-F]{24}$/;
/** A timeline history file, which pg_receivewal fetches for every timeline after the first. */
export const HISTORY_NAME = /^[0-9A-F]{8}\.history$/;
/** pg_receivewal's suffix of the segment it is still writing. */
export const PARTIAL_SUFFIX = ".partial";

export function isWalFileName(name: string): boolean {
  return SEGMENT_NAME.test(name) || HISTORY_NAME.test(name);
}

/**
 * The id of a generation opened at `now`: its second, or one second past the
 * newest of `existing` (so ids stay unique and in order when two open within
 * a second, or the clock went back).
 */
export function nextGenerationId(now: Date, existing: readonly string[]): string {
  let ms = Math.floor(now.getTime() / 1000) * 1000;
  const newest = [...existing].filter((id) => GENERATION_ID.test(id)).sort().at(-1);
  if (newest !== undefined) ms = Math.max(ms, generationTime(newest).getTime() + 1000);
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
}

/** When a generation was opened, from its id. */
export function generationTime(id: string): Date {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(id);
  if (!match) throw new Error(`not a WAL generation id: ${id}`);
  const [, year, month, day, hour, minute, second] = match;
  return new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}Z`);
}

/**
 * The segment holding `lsn` ("16/B374D848", as PostgreSQL prints it) on
 * `timeline`, for segments of `segmentBytes` (wal_segment_size).
 */
export function segmentNameOf(lsn: string, timeline: number, segmentBytes: number): string {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!match || !Number.isSafeInteger(timeline) || timeline < 1 || !Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) {
    throw new Error(`cannot name the WAL segment of ${lsn} on timeline ${timeline}`);
  }
  const position = (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
  const segment = position / BigInt(segmentBytes);
  const perLogId = 0x1_0000_0000n / BigInt(segmentBytes);
  const hex = (value: bigint): string => value.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(BigInt(timeline))}${hex(segment / perLogId)}${hex(segment % perLogId)}`;
}
