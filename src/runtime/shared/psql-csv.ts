// psql's --csv output back into rows. psql prints SQL NULL as its `null`
// setting, which the caller sets to a random marker that no real value holds,
// so NULL and the empty string stay apart.
import { randomBytes } from "node:crypto";
import type { Rows } from "../runtime.js";

/** A fresh marker for `psql -P null=...`. */
export function nullMarker(): string {
  return `<null:${randomBytes(8).toString("hex")}>`;
}

/**
 * RFC 4180 records, as psql writes them (quotes doubled, newlines inside
 * quotes). Every line is a record: a one-column row holding '' is an empty line.
 */
function parseRecords(text: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = "";
  let inQuotes = false;
  let atRecordStart = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    atRecordStart = false;
    if (inQuotes) {
      if (ch !== '"') {
        field += ch;
      } else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else {
        inQuotes = false;
      }
    } else if (ch === '"') {
      inQuotes = true;
    } else if (ch === ",") {
      fields.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      fields.push(field);
      records.push(fields);
      fields = [];
      field = "";
      atRecordStart = true;
    } else {
      field += ch;
    }
  }
  if (!atRecordStart) {
    fields.push(field);
    records.push(fields);
  }
  return records;
}

/** Rows of one result printed by `psql --csv -P null=<marker>`; no output means no rows. */
export function parsePsqlCsv(text: string, marker: string): Rows {
  const [header, ...records] = parseRecords(text);
  if (!header) return [];
  return records.map((fields) => {
    const row: Record<string, string | null> = {};
    header.forEach((column, index) => {
      const value = fields[index];
      row[column] = value === undefined || value === marker ? null : value;
    });
    return row;
  });
}
