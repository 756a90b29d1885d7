/**
 * The shape shared by a Redis broker and a Redis store on the same server, so that the
 * dispatcher can publish and acknowledge in one atomic step (see the store's handoff script).
 * Neither side imports the other: both speak this data type.
 */

/** One LPUSH of one Celery message onto a broker list. */
export interface RedisPush {
  db: number;
  key: string;
  value: string;
}

/** A Redis server's identity: the `run_id` from `INFO server`, unique per server process. */
export type RedisServerId = string;
