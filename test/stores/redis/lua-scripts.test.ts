/**
 * The Redis store's scripts: found by file name (`<name>-<keys>.lua`, the one place a key count is
 * written), shared fragments spliced in from includes/, and nothing missing or extra.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadScripts } from '../../../src/stores/redis/redis-store.js';

const SRC = fileURLToPath(new URL('../../../src/stores/redis/lua', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cls-lua-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the Redis store scripts', () => {
  const scripts = loadScripts(SRC);

  it('are every command, each with the key count its file name gives', () => {
    expect(Object.fromEntries([...scripts].map(([name, s]) => [name, s.keys]))).toEqual({
      add: 5,
      addKeyed: 6,
      remove: 5,
      reschedule: 1,
      rescheduleMany: 1,
      retag: 2,
      renew: 1,
      claim: 6,
      ack: 4,
      release: 4,
      bury: 6,
      revive: 6,
      handoff: 4,
      rangeAfter: 1,
      countRanges: 1,
      coldRemove: 1,
      coldPromote: 2,
      coldMove: 2,
      coldRange: 1,
      coldCount: 1,
      candidates: 3,
    });
  });

  it('have their includes spliced in: the lease check is written once and used by four scripts', () => {
    for (const s of scripts.values()) expect(s.lua).not.toContain('@include');
    const users = [...scripts]
      .filter(([, s]) => s.lua.includes('local function leasedTo('))
      .map(([n]) => n)
      .sort();
    expect(users).toEqual(['ack', 'bury', 'handoff', 'release']);
  });

  it('keep tags in one place: every script that adds a job, ends one or retags one includes the tag functions', () => {
    const users = [...scripts]
      .filter(([, s]) => s.lua.includes('local function dropTags('))
      .map(([n]) => n)
      .sort();
    expect(users).toEqual(['ack', 'add', 'addKeyed', 'bury', 'handoff', 'remove', 'retag', 'revive']);
  });

  it('forget a sent job in one place: acknowledge and hand-off share it', () => {
    const users = [...scripts]
      .filter(([, s]) => s.lua.includes('local function forgetSent('))
      .map(([n]) => n)
      .sort();
    expect(users).toEqual(['ack', 'handoff']);
    for (const n of ['ack', 'handoff'] as const) expect(scripts.get(n)?.lua).not.toMatch(/redis\.call\('HDEL', KEYS\[3\]/);
  });

  it('refuse a directory with a script missing, or an extra one', () => {
    const copy = join(dir, 'copy');
    cpSync(SRC, copy, { recursive: true, filter: (p) => !p.endsWith('renew-1.lua') });
    expect(() => loadScripts(copy)).toThrow(/scripts renew are missing/);
    writeFileSync(join(copy, 'renew-1.lua'), 'return 1');
    writeFileSync(join(copy, 'frobnicate-2.lua'), 'return 1');
    expect(() => loadScripts(copy)).toThrow(/frobnicate-2\.lua is not one of the Redis store's scripts/);
  });
});
