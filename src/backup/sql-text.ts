// Quoting for the few SQL statements the backup code builds itself (database
// names, role names, literals). Identifiers are always quoted: slugs contain
// '-', and nothing a user chose is ever spliced in unquoted.
export function quoteIdent(name: string): string {
  if (name.includes("\0")) throw new Error("an SQL identifier cannot contain NUL");
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
  if (value.includes("\0")) throw new Error("an SQL literal cannot contain NUL");
  // standard_conforming_strings is on in every supported PostgreSQL: only ' needs doubling.
  return `'${value.replace(/'/g, "''")}'`;
}
