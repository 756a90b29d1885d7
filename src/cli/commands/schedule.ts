/**
 * `schedule TASK`: stores a task to be sent when due (--eta or --countdown is required: publishing
 * at once is Celery's job) and prints its task id. Every bad flag is reported at once, as a usage error.
 */
import { Option, type Command } from 'commander';
import { isScheduled, type TaskOptions } from '../../job/options.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { parseJson, repeatable } from '../options.js';

export function addScheduleCommand(program: Command, ctx: CliContext): void {
  program
    .command('schedule')
    .description('store a task to be sent when due; prints its task id')
    .argument('<task>', 'registered Celery task name, e.g. proj.tasks.add')
    .option('--args <json>', 'positional arguments as a JSON array', '[]')
    .option('--kwargs <json>', 'keyword arguments as a JSON object', '{}')
    .option('--eta <iso8601>', 'when to send it, with a UTC offset, e.g. 2031-03-04T05:06:07Z')
    .option('--countdown <seconds>', 'send it this many seconds from now')
    .option('--id <id>', 'the Celery task id (default: a random UUID)')
    .option('--queue <queue>', 'the queue to send it to')
    .option('--routing-key <key>', 'routing key (with --exchange)')
    .option('--exchange <name>', 'exchange to publish to (default: the default exchange, by queue name)')
    .option('--priority <n>', 'message priority, an integer 0-255 (Redis: 0-9, 0 first)')
    .option('--expires <iso8601|seconds>', 'an ISO-8601 time, or seconds counted from dispatch')
    .option('--job-key <key>', 'a deduplication key: at most one scheduled job holds it')
    .option('--tag <tag>', 'a label to find and steer the job by later, e.g. tenant:42 (repeatable)', repeatable)
    .addOption(
      new Option(
        '--job-key-mode <mode>',
        'when a scheduled job already holds the key: fail (reject), take its place (replace), or leave it and print its id (keep)',
      ).choices(['reject', 'replace', 'keep']),
    )
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler schedule proj.tasks.add --args "[1, 2]" --countdown 3600\n')
    .action(async (task: string, o: ScheduleFlags) => {
      const options = scheduleOptions(o);
      if (!isScheduled(options)) throw new ValidationError(['pass --eta ISO8601 or --countdown SECONDS; to publish at once use Celery itself']);
      const args = parseJson(o.args ?? '[]', '--args', "a JSON array, e.g. '[1, 2]'");
      const kwargs = parseJson(o.kwargs ?? '{}', '--kwargs', 'a JSON object, e.g. \'{"y": 2}\'');
      const result = await ctx.withApp((a) => a.sendTask(task, args as unknown[], kwargs as Record<string, unknown>, options));
      ctx.io.stdout(`${result.id}\n`);
    });
}

type ScheduleFlags = Record<string, string | undefined> & { tag?: string[] };

function scheduleOptions(o: ScheduleFlags): TaskOptions {
  const options: TaskOptions = {};
  const problems: string[] = [];
  if (o.eta !== undefined) options.eta = o.eta;
  if (o.countdown !== undefined) {
    const n = Number(o.countdown);
    if (o.countdown.trim() === '' || Number.isNaN(n)) problems.push(`--countdown ${JSON.stringify(o.countdown)} is not a number of seconds`);
    else options.countdown = n;
  }
  if (o.id !== undefined) options.taskId = o.id;
  if (o.jobKey !== undefined) options.jobKey = o.jobKey;
  if (o.jobKeyMode !== undefined) options.jobKeyMode = o.jobKeyMode as TaskOptions['jobKeyMode'];
  if (o.tag !== undefined) options.tags = o.tag;
  if (o.queue !== undefined) options.queue = o.queue;
  if (o.routingKey !== undefined) options.routingKey = o.routingKey;
  if (o.exchange !== undefined) options.exchange = o.exchange;
  if (o.priority !== undefined) {
    const n = Number(o.priority);
    if (!/^\d+$/.test(o.priority.trim())) problems.push(`--priority ${JSON.stringify(o.priority)} is not an integer from 0 to 255`);
    else options.priority = n;
  }
  if (o.expires !== undefined) {
    // anything written as a number is seconds (so `-5` is refused as negative, not as a bad date)
    options.expires = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(o.expires.trim()) ? Number(o.expires) : o.expires;
  }
  if (problems.length) throw new ValidationError(problems);
  return options;
}
