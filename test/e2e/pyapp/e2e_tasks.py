"""Celery app for the end-to-end tests (run as ``/usr/bin/python3 -m celery -A e2e_tasks worker``).

Every task appends ONE JSON line describing its execution to the Redis list named by
``E2E_RECORD_KEY`` (on the broker's Redis server, or on ``E2E_RECORD_REDIS_URL``), so a test can prove that a real Celery
worker ran a message published by our code, and inspect what the worker saw.

Environment:
  E2E_BROKER_URL      broker URL (redis://host:port/db), required
  E2E_RECORD_KEY      Redis list the records go to, required
  E2E_DEFAULT_QUEUE   task_default_queue (default 'celery')
  E2E_RESULT_BACKEND  result backend URL (default: none)
  E2E_RECORD_REDIS_URL  Redis the records go to (default: E2E_BROKER_URL, which must then be
                      Redis); required when the broker is not Redis (e.g. amqp://)
  E2E_BROKER_TRANSPORT_OPTIONS  broker_transport_options as JSON (default: unset)
  E2E_QUEUE_MAX_PRIORITY  task_queue_max_priority (default: unset), so the worker declares its
                      queues with ``x-max-priority`` as a test declared them on RabbitMQ
  E2E_REMOTE_CONTROL  '1' turns remote control (the pidbox: revoke broadcasts) on; default off
  E2E_CONTROL_EXCHANGE  control_exchange (default 'celery'); a unique one isolates a test's
                      broadcasts on a shared broker
"""
import json
import os
import time

import redis
from celery import Celery

BROKER_URL = os.environ.get('E2E_BROKER_URL', 'redis://127.0.0.1:6379/0')
RECORD_KEY = os.environ.get('E2E_RECORD_KEY', 'e2e:records')
RECORD_REDIS_URL = os.environ.get('E2E_RECORD_REDIS_URL') or BROKER_URL
_MAX_PRIORITY = os.environ.get('E2E_QUEUE_MAX_PRIORITY')

app = Celery('e2e_tasks', broker=BROKER_URL)
app.conf.update(
    task_default_queue=os.environ.get('E2E_DEFAULT_QUEUE', 'celery'),
    worker_prefetch_multiplier=1,
    accept_content=['json'],
    task_serializer='json',
    result_serializer='json',
    task_acks_late=False,
    worker_hijack_root_logger=False,
    # No pidbox (remote control) queues on the shared Redis.
    worker_enable_remote_control=os.environ.get('E2E_REMOTE_CONTROL') == '1',
    control_exchange=os.environ.get('E2E_CONTROL_EXCHANGE') or 'celery',
    result_backend=os.environ.get('E2E_RESULT_BACKEND') or None,
)
if _MAX_PRIORITY:
    app.conf.task_queue_max_priority = int(_MAX_PRIORITY)
# kombu transport options shared with the producer (global_keyprefix, sep, priority_steps)
if os.environ.get('E2E_BROKER_TRANSPORT_OPTIONS'):
    app.conf.broker_transport_options = json.loads(os.environ['E2E_BROKER_TRANSPORT_OPTIONS'])

_redis = redis.Redis.from_url(RECORD_REDIS_URL)

# Keys Celery itself puts into the request context (protocol-2 headers, body "embed",
# and what the worker adds). Anything else came from custom message headers.
_STANDARD_KEYS = {
    'lang', 'task', 'id', 'root_id', 'parent_id', 'group', 'group_index', 'retries', 'eta',
    'expires', 'timelimit', 'shadow', 'argsrepr', 'kwargsrepr', 'origin', 'ignore_result',
    'replaced_task_nesting', 'stamped_headers', 'stamps', 'properties', 'reply_to',
    'correlation_id', 'hostname', 'delivery_info', 'args', 'kwargs', 'is_eager',
    'called_directly', 'callbacks', 'errbacks', 'chain', 'chord', 'headers', 'utc',
    'loglevel', 'logfile', 'taskset',
}


def _custom_headers(request):
    headers = getattr(request, 'headers', None)
    if headers:
        return dict(headers)
    extra = {k: v for k, v in vars(request).items()
             if k not in _STANDARD_KEYS and not k.startswith('_')}
    return extra or None


def _str_or_none(value):
    return None if value is None else str(value)


def _record(task, args, kwargs):
    """Append one JSON line describing this execution to the record list."""
    request = task.request
    delivery = getattr(request, 'delivery_info', None) or {}
    properties = getattr(request, 'properties', None) or {}
    priority = delivery.get('priority')
    if priority is None:
        priority = properties.get('priority')
    entry = {
        'task': task.name,
        'id': getattr(request, 'id', None),
        'args': list(args),
        'kwargs': kwargs,
        'queue': delivery.get('routing_key'),
        'exchange': delivery.get('exchange'),
        'priority': priority,
        'redelivered': delivery.get('redelivered'),
        'eta': _str_or_none(getattr(request, 'eta', None)),
        'expires': _str_or_none(getattr(request, 'expires', None)),
        'headers': _custom_headers(request),
        'shadow': getattr(request, 'shadow', None),
        'time_limits': getattr(request, 'timelimit', None),
        'retries': getattr(request, 'retries', None),
        'root_id': getattr(request, 'root_id', None),
        'parent_id': getattr(request, 'parent_id', None),
        'group': getattr(request, 'group', None),
        'correlation_id': getattr(request, 'correlation_id', None),
        'hostname': getattr(request, 'hostname', None),
        'at': time.time(),
    }
    _redis.rpush(RECORD_KEY, json.dumps(entry, default=str))


@app.task(bind=True, name='e2e.record')
def record(self, *args, **kwargs):
    _record(self, args, kwargs)


@app.task(bind=True, name='e2e.add')
def add(self, x, y):
    _record(self, (x, y), {})
    return x + y


@app.task(bind=True, name='e2e.echo')
def echo(self, *args, **kwargs):
    _record(self, args, kwargs)
    return list(args)


@app.task(bind=True, name='e2e.fail')
def fail(self, message='boom'):
    _record(self, (message,), {})
    raise ValueError(message)


# Link-callback task names used by fixture data from the older Python package.
@app.task(bind=True, name='tasks.notify')
def notify(self, *args, **kwargs):
    _record(self, args, kwargs)


@app.task(bind=True, name='tasks.alert')
def alert(self, *args, **kwargs):
    _record(self, args, kwargs)


# Task names used by the captured entries of the Python package (plain and canvas fixtures):
# chain add(1,2) | add(10) | note.si('done'), chord [add(1,1), add(2,2)] -> tsum().
@app.task(bind=True, name='bench.add')
def bench_add(self, *args, **kwargs):
    _record(self, args, kwargs)
    return sum(a for a in args if isinstance(a, (int, float)))


@app.task(bind=True, name='bench.note')
def bench_note(self, *args, **kwargs):
    _record(self, args, kwargs)
    return list(args)


@app.task(bind=True, name='bench.tsum')
def bench_tsum(self, numbers, *args, **kwargs):
    _record(self, (numbers,) + args, kwargs)
    return sum(numbers)
