/**
 * Imports flow one way, and this keeps it so: every `import`/`export … from` between the files
 * of src/ (type-only ones included) is read, and
 * - there is no cycle;
 * - the pure Celery protocol (src/celery/) imports only itself and the error classes;
 * - nothing outside the CLI imports the CLI;
 * - stores and brokers import nothing of the layers above them (client, dispatch, admin, metrics).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** file (relative to src/) -> the files it imports (relative to src/) */
const graph = new Map<string, string[]>();
for (const file of sourceFiles(SRC)) {
  const text = readFileSync(file, 'utf8');
  const targets: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s[^;]*?\sfrom\s+'(\.[^']+)'/gms)) {
    targets.push(relative(SRC, resolve(dirname(file), (m[1] as string).replace(/\.js$/, '.ts'))));
  }
  graph.set(relative(SRC, file), targets);
}

/** Every import of a file matching `from` that points at a file matching `to`, as "a -> b". */
function edges(from: (f: string) => boolean, to: (f: string) => boolean): string[] {
  return [...graph].flatMap(([f, ts]) => (from(f) ? ts.filter(to).map((t) => `${f} -> ${t}`) : []));
}

const UPPER_LAYERS =
  /^(app|canvas|results|scheduler|dispatcher|dispatcher-daemon|scheduled-jobs|dead-letters|migrate|schema|metrics|metrics-server|index)\.ts$|^(cli|entry)\//;

describe('the import graph of src/', () => {
  it('reads the files and their imports', () => {
    expect(graph.size).toBeGreaterThan(30);
    expect(graph.get('app.ts')).toContain('job.ts');
  });

  it('has no cycle, type-only imports included', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of graph.get(f) ?? []) {
        if (!graph.has(t)) continue;
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].join(' -> '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it('the pure protocol (src/celery/) imports only itself and errors.ts', () => {
    expect(
      edges(
        (f) => f.startsWith('celery/'),
        (t) => !t.startsWith('celery/') && t !== 'errors.ts',
      ),
    ).toEqual([]);
  });

  it('nothing outside the CLI imports the CLI, and nothing imports the entry points (index.ts, entry/)', () => {
    expect(
      edges(
        (f) => !f.startsWith('cli/'),
        (t) => t.startsWith('cli/'),
      ),
    ).toEqual([]);
    expect(
      edges(
        () => true,
        (t) => t === 'index.ts' || t.startsWith('entry/'),
      ),
    ).toEqual([]);
  });

  it('stores and brokers import nothing of the client, dispatch, admin or metrics layers', () => {
    expect(
      edges(
        (f) => f.startsWith('stores/') || f.startsWith('brokers/'),
        (t) => UPPER_LAYERS.test(t),
      ),
    ).toEqual([]);
  });

  it('every import names a file that exists', () => {
    expect(
      edges(
        () => true,
        (t) => !graph.has(t),
      ),
    ).toEqual([]);
  });
});
