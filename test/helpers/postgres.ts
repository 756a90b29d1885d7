/** Shared setup for tests on PostgreSQL: a schema per test (see services.ts uniqueSchema), dropped afterwards. */
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

/** `url` with `?schema=` set: the store URL of one test's schema. */
export function schemaUrl(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}
