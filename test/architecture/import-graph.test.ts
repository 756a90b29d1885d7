/**
 * Imports flow one way, and this keeps it so: every `import`/`export … from` between the files
 * of src/ (type-only ones included) is read, and
 * - every file sits in a layer (its top folder), and imports only its own layer and lower ones;
 * - there is no cycle;
 * - the pure Celery protocol (src/celery/) imports only itself and the error classes;
 * - one store (or broker) kind never imports another.
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

/**
 * The layers, lowest first. A file may import its own folder and any lower layer, never a higher
 * one: CLI → dashboard (ui) → client → admin/metrics → dispatch/results → stores/brokers → redis
 * connections → job vocabulary → pure protocol → util. The dashboard sits between the client and
 * the CLI: the CLI serves it (`ui`, `run --ui-port`), and it uses the app and the admin functions,
 * which never know it. index.ts and exports/ are the package's entry points, which nothing imports.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['util'],
  ['celery'],
  ['job'],
  ['redis'],
  ['stores', 'brokers'],
  ['results', 'dispatch'],
  ['admin', 'metrics'],
  ['client'],
  ['ui'],
  ['cli'],
  ['exports', 'index.ts'],
];

/** The layer of a file: its top folder under src/ (or index.ts). */
function layerOf(file: string): string {
  return file.includes('/') ? (file.split('/')[0] as string) : file;
}

function rank(file: string): number {
  return LAYERS.findIndex((names) => names.includes(layerOf(file)));
}

describe('the import graph of src/', () => {
  it('reads the files and their imports', () => {
    expect(graph.size).toBeGreaterThan(30);
    expect(graph.get('client/celery.ts')).toContain('job/options.ts');
  });

  it('puts every file in a layer: ls src names the layers', () => {
    expect([...graph.keys()].filter((f) => rank(f) < 0)).toEqual([]);
    expect(readdirSync(SRC).sort()).toEqual(LAYERS.flat().slice().sort());
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

  it('imports flow down the layers only, type-only imports included', () => {
    expect(
      edges(
        () => true,
        () => true,
      ).filter((e) => {
        const [f, t] = e.split(' -> ') as [string, string];
        return layerOf(f) !== layerOf(t) && rank(t) >= rank(f);
      }),
    ).toEqual([]);
  });

  it('the pure protocol (src/celery/) imports only itself and util/errors.ts', () => {
    expect(
      edges(
        (f) => f.startsWith('celery/'),
        (t) => !t.startsWith('celery/') && t !== 'util/errors.ts',
      ),
    ).toEqual([]);
  });

  it('a store imports no other store, a broker no other broker', () => {
    const kind = (f: string): string | undefined => /^(stores|brokers)\/([^/]+)\//.exec(f)?.slice(1).join('/');
    expect(
      edges(
        () => true,
        () => true,
      ).filter((e) => {
        const [f, t] = e.split(' -> ') as [string, string];
        return kind(f) !== undefined && kind(t) !== undefined && kind(f) !== kind(t);
      }),
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
