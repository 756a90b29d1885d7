import { it } from 'vitest';
import { readFileSync } from 'node:fs';
import { decodePickledDatetime } from '/work/main/src/celery/pickle.js';
it('x', () => {
  const d = JSON.parse(readFileSync('/work/main/test/data/celery_longterm_scheduler-1.x-entries.json', 'utf8'));
  for (const e of d.entries) {
    const v = JSON.parse(e.value)[1];
    for (const k of ['expires', 'task_type']) {
      try { console.log(k, e.description.slice(0, 40), decodePickledDatetime(v[k]).toISOString()); } catch (err) { console.log(k, e.description.slice(0,40), String(err)); }
    }
  }
});
