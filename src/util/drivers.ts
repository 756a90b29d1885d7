/**
 * The database and broker drivers, loaded when a store or broker of their kind is first made,
 * never by importing the package: a Redis-only user loads neither `pg`, `amqplib` nor
 * `better-sqlite3` (a native module that may not even build on their machine). The three are
 * CommonJS packages, so `require` loads them synchronously where they are needed.
 *
 * They stay `dependencies` (not optional peers, as BullMQ makes `pg`), so the CLI works out of
 * the box with every store; a slimmed install that leaves one out fails with one line naming
 * the package to install (`DriverMissingError`).
 */
import { createRequire } from 'node:module';
import { DriverMissingError } from './errors.js';

const load = createRequire(import.meta.url);

export type DriverName = 'pg' | 'amqplib' | 'better-sqlite3';

const DRIVER_OF: Record<DriverName, string> = {
  pg: 'PostgreSQL store',
  amqplib: 'RabbitMQ broker',
  'better-sqlite3': 'SQLite store',
};

/** The driver module (its `module.exports`), loaded on first use; `DriverMissingError` when it is not installed. */
export function loadDriver<T>(name: DriverName, what: string = DRIVER_OF[name]): T {
  try {
    return load(name) as T;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // only the driver itself missing, not a module it needs (that is a broken install: say so as it is)
    if (e?.code === 'MODULE_NOT_FOUND' && typeof e.message === 'string' && e.message.includes(`'${name}'`)) throw new DriverMissingError(name, what, err);
    throw err;
  }
}
