/**
 * A private Redis Cluster for tests (issue 15): `masters` masters with one replica each, started
 * from the machine's `redis-server` on free ports (each node's cluster bus is its port + 10000),
 * joined by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`, and stopped with
 * the test file. `TEST_REDIS_CLUSTER_URL` (`redis+cluster://host:port,host:port`) names a running
 * cluster to use instead; without either, `requireService` skips locally and fails under CI.
 *
 * The nodes keep nothing on disk (no RDB, no AOF; one temp dir holds each node's nodes.conf) and use a
 * short `cluster-node-timeout`, so a killed master's replica takes over within a few seconds.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canConnect, ephemeralRedisArgs, freePort } from './services.js';

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisClusterService {
  /** the seed nodes as one URL: redis+cluster://127.0.0.1:p1,127.0.0.1:p2,… */
  url: string;
  /** every node (masters first, as created; a failover changes which is which) */
  nodes: ClusterNode[];
  /** private clusters only: SIGKILL the node on `port` (a master: its replica takes over) */
  kill?(port: number): Promise<void>;
  /** the ports of the nodes that are masters now, by `CLUSTER NODES` of a live node */
  masters(): Promise<number[]>;
  stop(): Promise<void>;
}

/** How long a node may be unreachable before the cluster fails it over (ms). */
export const NODE_TIMEOUT_MS = 1000;

const started: ChildProcess[] = [];
process.once('exit', () => {
  for (const p of started) p.kill('SIGKILL');
});

const has = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;

/** A free port whose cluster bus port (+10000) is free too. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = await freePort();
    if (p > 55_000 || taken.has(p) || taken.has(p + 10_000)) continue;
    if (await canConnect('127.0.0.1', p + 10_000, 100)) continue;
    taken.add(p);
    taken.add(p + 10_000);
    return p;
  }
  throw new Error('no free port pair for a cluster node');
}

function cli(port: number, ...args: string[]): string {
  const r = spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

/** The ports of the masters, as one live node sees them (flags "master", not "fail"). */
function mastersSeenBy(port: number): number[] {
  return cli(port, 'cluster', 'nodes')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length > 2 && (f[2] as string).includes('master') && !(f[2] as string).includes('fail'))
    .map((f) => Number(/:(\d+)@/.exec(f[1] as string)?.[1]))
    .filter((p) => Number.isInteger(p) && p > 0)
    .sort((a, b) => a - b);
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`the test cluster: ${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a private cluster of `masters` masters and one replica each. */
export async function startPrivateCluster(masters = 3): Promise<RedisClusterService> {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < masters * 2; i++) ports.push(await clusterPort(taken));
  const dir = mkdtempSync(join(tmpdir(), 'cls-cluster-'));
  const children = new Map<number, ChildProcess>();
  const stop = async () => {
    await Promise.all(
      [...children.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(NODE_TIMEOUT_MS),
          ...ephemeralRedisArgs(dir),
        ],
        { stdio: 'ignore' },
      );
      started.push(child);
      children.set(port, child);
    }
    await until('every node listening', async () => (await Promise.all(ports.map((p) => canConnect('127.0.0.1', p, 200)))).every(Boolean));
    const out = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (out.status !== 0) throw new Error(`redis-cli --cluster create failed: ${(out.stdout + out.stderr).trim().split('\n').slice(-3).join(' / ')}`);
    await until('cluster_state:ok on every node, with every master seen', () =>
      ports.every((p) => cli(p, 'cluster', 'info').includes('cluster_state:ok') && mastersSeenBy(p).length === masters),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const live = () => ports.find((p) => children.get(p)?.exitCode === null && children.get(p)?.signalCode === null) as number;
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    masters: async () => mastersSeenBy(live()),
    kill: async (port) => {
      const child = children.get(port);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    stop,
  };
}

/** The cluster of `TEST_REDIS_CLUSTER_URL`, else a private one, else undefined (no redis-server). */
export async function redisCluster(masters = 3): Promise<RedisClusterService | undefined> {
  const given = process.env.TEST_REDIS_CLUSTER_URL;
  if (given) {
    const nodes = given
      .replace(/^redis\+cluster:\/\//, '')
      .split('/')[0]!
      .split(',')
      .map((hp) => {
        const [host, port] = hp.split(':');
        return { host: host || '127.0.0.1', port: Number(port || 6379) };
      });
    return { url: given, nodes, masters: async () => mastersSeenBy(nodes[0]!.port), stop: async () => {} };
  }
  if (!has('redis-server') || !has('redis-cli')) return undefined;
  return startPrivateCluster(masters);
}
