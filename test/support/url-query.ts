// One statement through a connection URL (a DATABASE_URL or a state store's),
// on a connection of its own, closed afterwards. The process runtime's URLs say
// 127.0.0.1: the tests talk to loopback only.
import pg from "pg";

export async function queryUrl(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}
