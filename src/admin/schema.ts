/**
 * `migrate-schema`: what a store's schema is, and bringing it up to date.
 * - PostgreSQL: versioned migrations, applied only when asked (here, or `--migrate` on start).
 * - SQLite: an embedded file nobody else owns; it creates and upgrades itself when opened.
 * - Redis: the Python package's layout; there is no schema. A cluster store neither.
 */
import { existsSync } from 'node:fs';
import { storeKind, type StoreKind } from '../stores/registry.js';
import { redactUrl } from '../util/errors.js';
import { migrateSchema, schemaStatus } from '../stores/postgres/migrations.js';
import { SQLITE_SCHEMA_VERSION, SqliteStore, betterSqlite3, parseSqliteUrl } from '../stores/sqlite/sqlite-store.js';

export interface SchemaResult {
  store: string;
  kind: StoreKind;
  /** the version found before (undefined: none yet) */
  from: number | undefined;
  /** the version now (with `statusOnly`: the version found) */
  to: number | undefined;
  /** the version this code needs */
  expected: number | undefined;
  changed: boolean;
  message: string;
}

export async function migrateStoreSchema(url: string, options: { statusOnly?: boolean } = {}): Promise<SchemaResult> {
  const kind = storeKind(url); // a ValidationError for anything that is not a store URL
  const store = redactUrl(url);
  const version = (v: number | undefined) => (v === undefined ? 'none' : String(v));
  if (kind === 'postgres') {
    if (options.statusOnly) {
      const { current, expected } = await schemaStatus(url);
      const state = current === expected ? 'up to date' : current === undefined || current < expected ? 'needs migrate-schema' : 'newer than this code';
      return {
        store,
        kind: 'postgres',
        from: current,
        to: current,
        expected,
        changed: false,
        message: `${store}: schema version ${version(current)}, this code needs ${expected} (${state})`,
      };
    }
    const { from, to } = await migrateSchema(url);
    const changed = from !== to;
    const message = changed ? `${store}: schema migrated from version ${version(from)} to ${to}` : `${store}: schema already at version ${to}; nothing to do`;
    return { store, kind: 'postgres', from, to, expected: to, changed, message };
  }
  if (kind === 'sqlite') {
    const { file } = parseSqliteUrl(url);
    const found = file !== ':memory:' && existsSync(file) ? readUserVersion(file) : undefined;
    if (options.statusOnly) {
      return {
        store,
        kind: 'sqlite',
        from: found,
        to: found,
        expected: SQLITE_SCHEMA_VERSION,
        changed: false,
        message: `${store}: schema version ${version(found)}, this code needs ${SQLITE_SCHEMA_VERSION} (SQLite files upgrade themselves when opened)`,
      };
    }
    const s = new SqliteStore(url);
    try {
      await s.count(); // opening creates or upgrades the schema
    } finally {
      await s.close();
    }
    const changed = found !== SQLITE_SCHEMA_VERSION;
    const message = changed
      ? `${store}: schema migrated from version ${version(found)} to ${SQLITE_SCHEMA_VERSION}`
      : `${store}: schema already at version ${SQLITE_SCHEMA_VERSION}; nothing to do`;
    return { store, kind: 'sqlite', from: found, to: SQLITE_SCHEMA_VERSION, expected: SQLITE_SCHEMA_VERSION, changed, message };
  }
  if (kind === 'redis-cluster') {
    return {
      store,
      kind,
      from: undefined,
      to: undefined,
      expected: undefined,
      changed: false,
      message: `${store}: a cluster store has no schema to migrate (its layout and shard count are fixed when it is first used); nothing to do`,
    };
  }
  return {
    store,
    kind: 'redis',
    from: undefined,
    to: undefined,
    expected: undefined,
    changed: false,
    message: `${store}: Redis stores have no schema (the Python package's layout); nothing to do`,
  };
}

/** `PRAGMA user_version` of an existing file, read only; 0 (a fresh file) reads as none. */
function readUserVersion(file: string): number | undefined {
  const db = new (betterSqlite3())(file, { readonly: true, fileMustExist: true });
  try {
    const v = db.pragma('user_version', { simple: true }) as number;
    return v === 0 ? undefined : v;
  } finally {
    db.close();
  }
}
