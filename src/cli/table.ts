// Readable output without a dependency: aligned columns and key/value blocks.

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)));
  return all
    .map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  ").trimEnd())
    .join("\n");
}

/** "key:  value" lines, keys aligned; pairs with an empty value are left out. */
export function fields(pairs: readonly (readonly [string, string])[]): string {
  const shown = pairs.filter(([, value]) => value !== "");
  const width = Math.max(...shown.map(([key]) => key.length)) + 1;
  return shown.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${value}`).join("\n");
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(count: number | bigint): string {
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}
