/**
 * The one way tests get a service.
 *
 * - The URL comes from the environment (`TEST_REDIS_URL`, then `REDIS_URL`), else the local default.
 * - If nothing listens there but `redis-server` is installed, a private server is started on a free port.
 * - If there is still no service: the test skips locally, and FAILS when `CI=true`, so a green CI never
 *   hides a skipped backend.
 *
 * Isolation without FLUSHALL: `uniquePrefix()` for shared servers; `privateRedis()` for tests that need
 * the bare (unprefixed) layout of the original package, which gets a whole server to itself.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export interface RedisService {
  /** e.g. redis://127.0.0.1:6379 (no database path) */
  url: string;
  /** `url` with a database number appended */
  urlFor(db: number): string;
  /** stops the server if this helper started it */
  stop(): Promise<void>;
  /** private servers only: kill the server (SIGKILL), to simulate an outage */
  kill?(): Promise<void>;
  /** private servers only: start it again on the same port (after `kill`) */
  restart?(): Promise<void>;
}

const started: ChildProcess[] = [];
process.once('exit', () => {
  for (const p of started) p.kill('SIGKILL');
});

function parseHostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) };
}

export function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, host, () => done(true));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The arguments of a `redis-server` that keeps nothing on disk (no RDB, no AOF), its files in `dir`. */
export function ephemeralRedisArgs(dir: string): string[] {
  return ['--save', '', '--appendonly', 'no', '--dir', dir];
}

function hasBinary(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

async function startPrivateRedis(): Promise<RedisService> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cls-redis-'));
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', ...ephemeralRedisArgs(dir)], { stdio: 'ignore' });
    started.push(child);
    const deadline = Date.now() + 5000;
    while (!(await canConnect('127.0.0.1', port, 200))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('private redis-server did not start');
      await new Promise((r) => setTimeout(r, 25));
    }
    return child;
  };
  const halt = async (child: ChildProcess, signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  };
  let child = await launch();
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    urlFor: (db) => `${url}/${db}`,
    stop: async () => {
      await halt(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => halt(child, 'SIGKILL'),
    restart: async () => {
      child = await launch();
    },
  };
}

/**
 * The shared Redis (env URL or local default), or a private one when nothing listens there.
 * Returns `undefined` when no Redis can be had; call `requireService` with it.
 */
export async function sharedRedis(): Promise<RedisService | undefined> {
  const url = (process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379').replace(/\/\d*$/, '');
  const { host, port } = parseHostPort(url);
  if (await canConnect(host, port)) return { url, urlFor: (db) => `${url}/${db}`, stop: async () => {} };
  if (hasBinary('redis-server')) return startPrivateRedis();
  return undefined;
}

/** A Redis server for this test file alone (bare keys are safe there). */
export async function privateRedis(): Promise<RedisService | undefined> {
  if (hasBinary('redis-server')) return startPrivateRedis();
  return undefined;
}

/** A key prefix no other test run uses. */
export function uniquePrefix(label = 't'): string {
  return `cls-test:${label}:${randomBytes(4).toString('hex')}:`;
}

/**
 * Skip-or-fail policy. Use as `const skip = requireService(redis, 'Redis')` and
 * `describe.skipIf(skip)(...)`. Throws under CI when the service is missing.
 */
export function requireService<T>(service: T | undefined, name: string): boolean {
  if (service !== undefined) return false;
  if (IN_CI) throw new Error(`${name} is required when CI=true, but none could be reached or started`);
  console.warn(`[skip] ${name} not available: its tests are skipped (they fail when CI=true)`);
  return true;
}

/**
 * The RabbitMQ for AMQP tests: `TEST_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672//`.
 * Returns the URL when its port accepts connections, else `undefined` (call `requireService`).
 */
export async function rabbitmq(): Promise<string | undefined> {
  const url = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672//';
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'amqps:' ? 5671 : 5672));
  return (await canConnect(u.hostname || '127.0.0.1', port)) ? url : undefined;
}

export interface RabbitService {
  /** amqp://guest:guest@127.0.0.1:<port>// */
  url: string;
  /** stops the node (kept on disk), for `start` to bring it back with its durable queues */
  halt(): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** runs `rabbitmqctl -n <this node> ...args`; returns its output, throws when it fails */
  ctl(...args: string[]): string;
  /** with `tls`: amqps://guest:guest@localhost:<tls port>// */
  tlsUrl?: string;
}

export interface RabbitTlsFiles {
  /** PEM files, readable by the rabbitmq user */
  cacertfile: string;
  certfile: string;
  keyfile: string;
}

/**
 * A RabbitMQ node of this test file's own (its own port, data directory and node name), for
 * tests that stop and restart the broker without touching the machine's RabbitMQ.
 * Returns `undefined` when `rabbitmq-server` is not installed.
 */
export async function privateRabbitmq(options: { tls?: RabbitTlsFiles } = {}): Promise<RabbitService | undefined> {
  if (!hasBinary('rabbitmq-server') || !hasBinary('rabbitmqctl')) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'cls-rabbit-'));
  const port = await freePort();
  const distPort = await freePort();
  const tlsPort = options.tls ? await freePort() : undefined;
  const config = [`listeners.tcp.default = ${port}`];
  if (options.tls && tlsPort) {
    config.push(
      `listeners.ssl.default = ${tlsPort}`,
      `ssl_options.cacertfile = ${options.tls.cacertfile}`,
      `ssl_options.certfile = ${options.tls.certfile}`,
      `ssl_options.keyfile = ${options.tls.keyfile}`,
      'ssl_options.verify = verify_none',
      'ssl_options.fail_if_no_peer_cert = false',
    );
  }
  writeFileSync(join(dir, 'rabbitmq.conf'), `${config.join('\n')}\n`);
  spawnSync('sh', [
    '-c',
    `mkdir -p "${dir}/mnesia" "${dir}/log" && echo '[].' > "${dir}/enabled_plugins" && chown -R rabbitmq:rabbitmq "${dir}" 2>/dev/null; chmod 755 "${dir}"`,
  ]);
  const node = `clstest${randomBytes(3).toString('hex')}@localhost`;
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_FEATURE_FLAGS_FILE: join(dir, 'feature_flags'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
  };
  const ctl = (...args: string[]) => spawnSync('rabbitmqctl', ['-n', node, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  const start = async () => {
    const child = spawn('rabbitmq-server', [], { env, stdio: 'ignore', detached: false });
    started.push(child);
    const deadline = Date.now() + 60_000;
    while (!(await canConnect('127.0.0.1', port, 200))) {
      if (Date.now() > deadline) throw new Error('private rabbitmq-server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await start();
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}//`,
    ...(tlsPort && { tlsUrl: `amqps://guest:guest@localhost:${tlsPort}//` }),
    ctl: (...args: string[]) => {
      const r = ctl(...args);
      if (r.status !== 0) throw new Error(`rabbitmqctl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
      return r.stdout;
    },
    halt: () => void ctl('stop_app'),
    start: async () => {
      ctl('start_app');
      const deadline = Date.now() + 60_000;
      while (!(await canConnect('127.0.0.1', port, 200))) {
        if (Date.now() > deadline) throw new Error('private rabbitmq did not come back');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: async () => {
      ctl('stop');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

export interface PostgresService {
  /** e.g. postgres://postgres@127.0.0.1:5432/test */
  url: string;
  /** stops the server if this helper started it */
  stop(): Promise<void>;
}

function postgresBinDir(): string | undefined {
  const r = spawnSync('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1'], { encoding: 'utf8' });
  const dir = r.stdout.trim();
  return dir && spawnSync('test', ['-x', join(dir, 'postgres')]).status === 0 && spawnSync('test', ['-x', join(dir, 'initdb')]).status === 0 ? dir : undefined;
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` user. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0)
    throw new Error('running as root, and there is no postgres user to run a private PostgreSQL as');
  return { uid, gid };
}

async function startPrivatePostgres(bin: string): Promise<PostgresService> {
  const user = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'cls-pg-'));
  if (user) spawnSync('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
  const data = join(dir, 'data');
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], {
    encoding: 'utf8',
    ...user,
  });
  if (init.status !== 0) throw new Error(`initdb failed for a private PostgreSQL: ${init.stderr}`);
  const port = await freePort();
  const args = [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
  ];
  // A watchdog shell: the server gets a fast shutdown when our end of its stdin closes, so it
  // also goes away (with its directory) when the test process is killed without exit handlers.
  const child = spawn(
    'sh',
    [
      '-c',
      'exec 3<&0; "$0" "$@" </dev/null & pid=$!; (read _ <&3; kill -INT "$pid" 2>/dev/null) & wait "$pid"; rm -rf "$CLS_PG_DIR"',
      join(bin, 'postgres'),
      ...args,
    ],
    { stdio: ['pipe', 'ignore', 'ignore'], env: { ...process.env, CLS_PG_DIR: dir }, ...user },
  );
  started.push(child);
  const deadline = Date.now() + 15_000;
  while (!(await canConnect('127.0.0.1', port, 200))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('private PostgreSQL did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  // accepting TCP is not yet accepting logins: wait until a query works
  for (;;) {
    const ready = spawnSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port)]);
    if (ready.status === 0) break;
    if (Date.now() > deadline) throw new Error('private PostgreSQL did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.stdin?.end(); // the watchdog shuts the server down
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The PostgreSQL for tests: `TEST_POSTGRES_URL`, then `DATABASE_URL`, else
 * postgres://postgres@127.0.0.1:5432/test. When nothing listens there and PostgreSQL is installed,
 * a private server is started on a free port. `undefined` when none can be had (call `requireService`).
 */
export async function postgres(): Promise<PostgresService | undefined> {
  const url = process.env.TEST_POSTGRES_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const u = new URL(url);
  if (await canConnect(u.hostname || '127.0.0.1', Number(u.port || 5432))) return { url, stop: async () => {} };
  const bin = postgresBinDir();
  return bin ? startPrivatePostgres(bin) : undefined;
}

/** A schema name no other test uses; drop it (CASCADE) when done. */
export function uniqueSchema(label = 't'): string {
  return `${label}_${randomBytes(5).toString('hex')}`;
}
