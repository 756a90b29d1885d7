"""The Python package's dispatcher, as a test double (run with Debian's ``/usr/bin/python3``).

``celery_longterm_scheduler``'s ``celery longterm_scheduler`` command is a few lines: for every
job due by now, read its entry, decode it, ``app.send_task(*args, **kw)``, then delete it. This
script does the same, written here so tests can prove that entries our TypeScript code writes
are sent by the Python package too, on a real Celery (5.2 on Debian):

* the store is the package's bare layout: ``GET <task id>`` and the sorted set
  ``scheduled_task_id_by_time`` in a Redis database of its own;
* an entry is ``json.loads`` with the package's pickle fallback: a DICT VALUE (only those: the
  package decodes in ``object_hook``) that is a string starting with ``__python_pickle__`` is
  replaced by ``pickle.loads`` of the base64 after the marker;
* one loop, no claims: a Python exception stops the run, with the traceback on stderr and a
  non-zero exit, and every job after it stays stored, as with the package.

Environment: CRON_STORE_URL (required), CRON_BROKER_URL (required), CRON_RESULT_BACKEND,
CRON_DEFAULT_QUEUE (default 'celery'). Argument: ``--timestamp UNIX_SECONDS`` (default: now).
Prints ``sent <task id> <task name>`` per job.
"""
import argparse
import base64
import json
import os
import pickle
import sys
import time

import redis
from celery import Celery

MARKER = '__python_pickle__'
INDEX = 'scheduled_task_id_by_time'


def unpickle_values(obj):
    for key, value in obj.items():
        if isinstance(value, str) and value.startswith(MARKER):
            obj[key] = pickle.loads(base64.b64decode(value[len(MARKER):]))
    return obj


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--timestamp', type=float, default=None)
    until = parser.parse_args().timestamp
    if until is None:
        until = time.time()

    app = Celery('python_cron', broker=os.environ['CRON_BROKER_URL'])
    app.conf.update(
        task_default_queue=os.environ.get('CRON_DEFAULT_QUEUE') or 'celery',
        task_serializer='json',
        result_backend=os.environ.get('CRON_RESULT_BACKEND') or None,
    )
    store = redis.Redis.from_url(os.environ['CRON_STORE_URL'])

    for raw_id in store.zrangebyscore(INDEX, 0, until):
        task_id = raw_id.decode('utf-8')
        args, kw = json.loads(store.get(task_id), object_hook=unpickle_values)
        if isinstance(kw.get('args'), list):
            kw['args'] = tuple(kw['args'])
        app.send_task(*args, **kw)
        store.delete(task_id)
        store.zrem(INDEX, task_id)
        print('sent', task_id, args[0], flush=True)


if __name__ == '__main__':
    sys.exit(main())
