// A time given on the command line (--to, --at): RFC 3339 with its zone, as
// the API writes times, so "14:05" is never read in the wrong zone.
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { UsageError } from "./usage-error.js";

const RFC_3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$/;

export function timeArgument(flag: string, value: string): Timestamp {
  const text = value.trim();
  const parsed = RFC_3339.test(text) ? new Date(text.replace(" ", "T")) : undefined;
  if (!parsed || Number.isNaN(parsed.getTime())) {
    throw new UsageError(`${flag} ${JSON.stringify(value)} is not a time: give RFC 3339 with a zone, e.g. 2026-11-30T14:05:00Z or 2026-11-30T15:05:00+01:00`);
  }
  return timestampFromDate(parsed);
}
