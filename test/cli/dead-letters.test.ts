/**
 * `dead list | show | retry | purge`, the dispatch summary and `stats` through the CLI
 * (in-process), on every store with a URL, dispatching into a Redis broker: a job for an exchange
 * with no queue bound (refused; a dead letter after `--max-attempts 1`), a corrupt entry, and an
 * ordinary job.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cli as runCli } from '../helpers/cli.js';
import { createStore } from '../../src/stores/registry.js';
import { dropSchema, schemaUrl } from '../helpers/postgres.js';
import { postgres, requireService, sharedRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';

const redis = await sharedRedis();
const pgService = await postgres();
const skipRedis = requireService(redis, 'Redis (the broker)');
const dir = mkdtempSync(join(tmpdir(), 'cls-dead-cli-'));
const schemas: string[] = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  for (const s of schemas) await dropSchema(pgService!.url, s);
});

const targets = [
  { name: 'SQLite', skip: false, flags: () => ({ backend: `sqlite:///${join(dir, `dead-${uniquePrefix('f')}.db`)}`, extra: [] as string[] }) },
  {
    name: 'PostgreSQL',
    skip: requireService(pgService, 'PostgreSQL'),
    flags: () => {
      const schema = uniqueSchema('dead');
      schemas.push(schema);
      return { backend: schemaUrl(pgService!.url, schema), extra: ['--migrate'] };
    },
  },
  { name: 'Redis', skip: skipRedis, flags: () => ({ backend: redis!.urlFor(0), extra: ['--key-prefix', uniquePrefix('dead-cli')] }) },
];

for (const target of targets) {
  describe.skipIf(target.skip || skipRedis)(`dead letters through the CLI, ${target.name} store`, () => {
    it('dispatch makes the poison jobs dead letters; list, show, retry and purge them', async () => {
      const { backend, extra } = target.flags();
      const queue = uniquePrefix('dead-q');
      const g = ['--backend', backend, ...extra, '--broker', redis!.urlFor(0)];
      const cli = (...argv: string[]) => runCli([...g, ...argv]);
      const soon = new Date(Date.now() - 1000).toISOString();
      const ok = (await cli('schedule', 'proj.ok', '--eta', soon, '--queue', queue)).stdout.trim();
      const refused = (await cli('schedule', 'proj.report', '--eta', soon, '--exchange', `${queue}-ex`, '--routing-key', 'nobody')).stdout.trim();
      const prefix = extra[extra.indexOf('--key-prefix') + 1];
      const store = createStore(backend, { ...(target.name === 'Redis' && { keyPrefix: prefix }), ...(target.name === 'PostgreSQL' && { migrate: true }) });
      await store.add([{ id: 'junk-1', dueAt: Date.now() / 1000 - 5, entry: 'not json' }]);
      await store.close();

      const d = await cli('dispatch', '--max-attempts', '1');
      expect(d.code).toBe(1);
      expect(d.stdout).toMatch(/^sent 1, failed 0, dead letters 2, elapsed [\d.]+ m?s\n$/);
      expect(d.stderr).toContain('2 jobs became dead letters and will not be sent; see `dead list`');
      const r = new Redis(redis!.urlFor(0));
      expect(await r.llen(queue)).toBe(1);

      const list = await cli('dead', 'list');
      expect(list.code).toBe(0);
      expect(list.stdout.split('\n')[0]).toMatch(/^ID\s+DIED \(UTC\)\s+REASON\s+ATTEMPTS\s+TASK\s+ERROR$/);
      expect(list.stdout).toMatch(new RegExp(`${refused}\\s+\\S+ \\S+\\s+max_attempts\\s+1\\s+proj\\.report\\s+exchange "${queue}-ex" has no queue bound`));
      expect(list.stdout).toMatch(/junk-1\s+\S+ \S+\s+corrupt\s+0\s+\?\s+stored job "junk-1" is corrupt: not JSON/);
      expect(list.stdout).toMatch(/\n2 dead letters\n$/);
      const json = (await cli('dead', 'list', '--json', '--limit', '1')).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(json).toHaveLength(2);
      expect(json[1]).toMatchObject({ next_cursor: expect.any(String) });
      const page2 = (await cli('dead', 'list', '--json', '--cursor', String(json[1]!.next_cursor))).stdout.trim().split('\n');
      expect(page2).toHaveLength(1);

      const show = await cli('dead', 'show', refused);
      expect(show.stdout).toMatch(/^id\s+\S+\nstate\s+dead letter/);
      expect(show.stdout).toMatch(/reason\s+max_attempts\n/);
      expect(show.stdout).toMatch(/stored\s+\[\["proj\.report"\]/);
      const shown = JSON.parse((await cli('dead', 'show', 'junk-1', '--json')).stdout) as Record<string, unknown>;
      expect(shown).toMatchObject({ id: 'junk-1', reason: 'corrupt', entry: 'not json', attempts: 0, task: '?' });
      const none = await cli('dead', 'show', 'nope');
      expect(none.code).toBe(1);
      expect(none.stdout).toContain('not a dead letter');

      expect((await cli('stats')).stdout).toMatch(/dead\s+2 \(dead letters: see `dead list`\)/);

      const retry = await cli('dead', 'retry', refused, 'nope');
      expect(retry.code).toBe(1);
      expect(retry.stdout).toBe('retried 1\n');
      expect(retry.stderr).toBe('not dead letters: nope\n');
      const shownAgain = JSON.parse((await cli('show', refused, '--json')).stdout) as Record<string, unknown>;
      expect(shownAgain).toMatchObject({ id: refused, state: 'scheduled' });

      expect((await cli('dead', 'retry')).code).toBe(2);
      expect((await cli('dead', 'purge', 'x', '--all')).code).toBe(2);
      const purge = await cli('dead', 'purge', '--all', '--json');
      expect(JSON.parse(purge.stdout)).toEqual({ purged: 1, notDead: [] });
      expect((await cli('dead', 'list')).stdout).toBe('no dead letters\n');
      expect((await cli('revoke', refused)).code).toBe(0);
      expect((await cli('dispatch')).stdout).toMatch(/^sent 0, failed 0, dead letters 0/);
      await r.del(queue, `_kombu.binding.${queue}`);
      r.disconnect();
      expect(ok).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
}

describe('retry flags of dispatch and run', () => {
  it.each([
    ['--max-attempts', '0'],
    ['--max-attempts', '1001'],
    ['--retry-delay-ms', '0'],
    ['--retry-delay-max-ms', 'soon'],
  ])('%s %s is a usage error', async (flag, value) => {
    for (const command of ['dispatch', 'run']) {
      const r = await runCli(['--backend', `sqlite:///${join(dir, 'flags.db')}`, command, flag, value]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^error: ${flag} must be a whole number from \\d+ to \\d+, got "${value}"\\n$`));
    }
  });

  it('--help explains refusals and dead letters', async () => {
    const r = await runCli(['run', '--help']);
    expect(r.stdout).toContain('--max-attempts <n>');
    expect(r.stdout).toContain('becomes a dead letter after --max-attempts refusals');
  });
});
