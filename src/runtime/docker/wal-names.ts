// Names in the WAL archive, checked before any of them reaches a shell: a
// generation's id, WAL segment and timeline history file names, and the
// arithmetic from an LSN to the segment holding it. Everything else found in
// the archive is ignored, and nothing else is ever asked for.
import { RuntimeError } from "../runtime.js";

/** The replication role pg_receivewal logs in as, and the physical slot it streams from. */
export const WAL_ROLE = "sota_wal";
export const WAL_SLOT = "sota_wal";
/** pg_receivewal's application_name, for pg_stat_replication. */
export const WAL_RECEIVER_APP = "sota_walreceiver";
/** The sidecar's label naming the generation it streams into. */
export const LABEL_WAL_GENERATION = "io.sota.wal-generation";

/** "20261130T120000Z": sortable, path-safe, one per second at most. */
export const GENERATION = /^\d{8}T\d{6}Z$/;
/** A WAL segment: timeline, log and segment number, 8 hex digits each. */
export const SEGMENT = /^[0-9A-F]{24}$/;
/** A timeline history file. */
export const HISTORY = /^[0-9A-F]{8}\.history$/;
const PARTIAL_SUFFIX = ".partial";

export function generationId(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

/**
 * A new generation's id: now, or one second after the newest existing one
 * when that is not earlier (two generations within a second, a clock set back).
 */
export function nextGenerationId(existing: readonly string[], now = new Date()): string {
  const newest = [...existing].filter((id) => GENERATION.test(id)).sort().at(-1);
  const candidate = generationId(now);
  if (!newest || candidate > newest) return candidate;
  return generationId(new Date(generationTime(newest).getTime() + 1000));
}

function generationTime(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(id);
  if (!m) throw new RuntimeError("failed", `invalid WAL generation ${JSON.stringify(id.slice(0, 40))}`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}

export function checkGeneration(id: string): void {
  if (!GENERATION.test(id)) throw new RuntimeError("failed", `invalid WAL generation ${JSON.stringify(id.slice(0, 40))}`);
}

/** A name a caller may ask for: a segment (read as its partial while it is being written) or a history file. */
export function checkWalFileName(name: string): void {
  if (!SEGMENT.test(name) && !HISTORY.test(name)) {
    throw new RuntimeError("failed", `invalid WAL file name ${JSON.stringify(name.slice(0, 40))}`);
  }
}

/** A file found in a generation's directory, as the Runtime port reports it; undefined for anything else. */
export function archivedFile(fileName: string): { readonly name: string; readonly complete: boolean } | undefined {
  if (SEGMENT.test(fileName) || HISTORY.test(fileName)) return { name: fileName, complete: true };
  if (fileName.endsWith(PARTIAL_SUFFIX)) {
    const name = fileName.slice(0, -PARTIAL_SUFFIX.length);
    if (SEGMENT.test(name)) return { name, complete: false };
  }
  return undefined;
}

/** The segment file holding `lsn` ("16/B374D848") on `timeline`, for `segmentBytes`-sized segments. */
export function segmentOf(lsn: string, timeline: number, segmentBytes: number): string {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m || !Number.isInteger(timeline) || timeline < 1 || !Number.isInteger(segmentBytes) || segmentBytes < 1) {
    throw new RuntimeError("failed", `cannot name the WAL segment of ${JSON.stringify(lsn.slice(0, 40))}`);
  }
  const position = (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
  const size = BigInt(segmentBytes);
  const segment = position / size;
  const perLogId = 0x1_0000_0000n / size;
  const hex = (value: bigint | number): string => value.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(timeline)}${hex(segment / perLogId)}${hex(segment % perLogId)}`;
}
