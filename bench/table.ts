// The one markdown table the benchmark prints, and the number formats in it.
import type { Machine } from "./machine.js";

export interface Row {
  /** "1a", "2", ...: the row number and a letter per variant. */
  readonly id: string;
  readonly name: string;
  readonly median: string;
  readonly p95: string;
  readonly ratio: string;
  /** The goal, with the measured figure in brackets where it is neither median nor p95. */
  readonly goal: string;
  /** "yes", "no", "–" (nothing to judge), "skipped: why" or "error: what". */
  readonly met: string;
}

export const NONE = "–";

/** A row that could not be measured here; `met` says why. */
export function skippedRow(id: string, name: string, reason: string): Row {
  return { id, name, median: NONE, p95: NONE, ratio: NONE, goal: NONE, met: `skipped: ${reason}` };
}

export function errorRow(id: string, name: string, error: unknown): Row {
  const message = error instanceof Error ? error.message : String(error);
  return { id, name, median: NONE, p95: NONE, ratio: NONE, goal: NONE, met: `error: ${message.split("\n")[0]?.slice(0, 200)}` };
}

export function verdict(met: boolean): string {
  return met ? "yes" : "no";
}

export function ms(value: number): string {
  if (!Number.isFinite(value)) return NONE;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

export function mb(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : NONE;
}

export function times(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : NONE;
}

export function perSecond(value: number): string {
  return Number.isFinite(value) ? `${Math.round(value).toLocaleString("en-US")}/s` : NONE;
}

export function renderTable(rows: readonly Row[], machine: Machine, mode: string): string {
  const cell = (text: string): string => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const lines = [
    `sota-db benchmark (${mode}), ${machine.date}: ${machine.cores} cores (${machine.cpu}), ${machine.memory} RAM, ${machine.os}, Node ${machine.node}, PostgreSQL ${machine.postgres}, PgBouncer ${machine.pgbouncer}`,
    "",
    "| # | measurement | median | p95 | ratio | goal | met |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map((row) => `| ${[row.id, row.name, row.median, row.p95, row.ratio, row.goal, row.met].map(cell).join(" | ")} |`),
  ];
  return lines.join("\n");
}
