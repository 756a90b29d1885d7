/** Shared setup for the PostgreSQL tests: a schema per test, dropped afterwards. */
import pg from 'pg';

/** Runs SQL on a connection of its own. */
export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

export function dropSchema(url: string, schema: string): Promise<unknown> {
  return sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}
