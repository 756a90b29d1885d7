/**
 * The entries the Python package `celery_longterm_scheduler` 1.x wrote into Redis, captured for
 * tests (a copy of shared/fixtures: tests must not read outside the repository).
 */
import { readFileSync } from 'node:fs';

export interface FixtureEntry {
  description: string;
  /** the Redis key: the task id */
  key: string;
  /** the score in scheduled_task_id_by_time */
  score: number;
  /** the stored JSON string */
  value: string;
}

export const fixture = JSON.parse(readFileSync(new URL('../data/celery_longterm_scheduler-1.x-entries.json', import.meta.url), 'utf8')) as {
  entries: FixtureEntry[];
};

/**
 * Entries the Python package wrote for Celery canvas and workflow options (chain, group, chord,
 * links as a list and with their own options, link_error, retries with root and parent ids, a
 * zone-named datetime expires), all through `apply_async(..., eta=2031-03-04T05:06:07Z)`; several
 * entries can come from one call (a group or chord writes one per header task).
 */
export const canvasFixture = JSON.parse(readFileSync(new URL('../data/celery_longterm_scheduler-1.x-canvas-entries.json', import.meta.url), 'utf8')) as {
  entries: FixtureEntry[];
};
