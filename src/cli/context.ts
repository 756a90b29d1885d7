/**
 * What every command is handed: the process's IO (the only way the CLI touches stdout, stderr,
 * the environment and signals), the global flags, and the app they open. A flag wins over its
 * environment variable, which wins over the default; the app is opened only when a command needs
 * it, and `withApp` closes it whatever the command does.
 */
import type { Command } from 'commander';
import { Celery, CELERY_DEFAULTS, type CeleryConfig } from '../client/celery.js';
import { ValidationError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { createCliLogger, type LogFormat } from './log.js';
import { parseJson } from './options.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** subscribes to SIGINT/SIGTERM (for `run`); returns an unsubscribe function */
  onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void;
  /** exits the process at once (a second signal during `run`) */
  exitNow?: (code: number) => void;
  /** whether stderr is a terminal (progress bars redraw in place) */
  isTty?: () => boolean;
  /**
   * Asks a person a question on the terminal and resolves to the line they typed; absent (or
   * resolving to undefined) when stdin is not a terminal, so a bulk action without --yes refuses.
   */
  ask?: (question: string) => Promise<string | undefined>;
}

/** The global flags, as commander parsed them (see program.ts). */
export interface GlobalOptions {
  broker?: string;
  brokerTransportOptions?: string;
  backendMasterName?: string;
  backend?: string;
  keyPrefix?: string;
  defaultQueue?: string;
  migrate?: boolean;
  logFormat: LogFormat;
}

export interface CliContext {
  io: CliIo;
  /** the global flags; read them inside an action, once commander has parsed them */
  globals: () => GlobalOptions;
  /** the long-term store URL: --backend, else its env variable, else the default */
  backendUrl: () => string;
  /** a logger writing lines to stderr in the --log-format */
  logger: () => Logger;
  /** opens the app from the global flags and env (and `extra`, a command's own settings), runs `fn` with it, and closes it */
  withApp: <T>(fn: (a: Celery) => Promise<T>, extra?: Pick<CeleryConfig, 'resultBackend'>) => Promise<T>;
}

export function createContext(program: Command, io: CliIo): CliContext {
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const backendUrl = (): string => globals().backend ?? io.env.CELERY_LONGTERM_SCHEDULER_BACKEND ?? CELERY_DEFAULTS.longtermSchedulerBackend;
  const logger = (): Logger => createCliLogger(globals().logFormat, (line) => io.stderr(`${line}\n`));

  const app = (extra: Pick<CeleryConfig, 'resultBackend'> = {}): Celery => {
    const g = globals();
    const transport = g.brokerTransportOptions ?? io.env.CELERY_BROKER_TRANSPORT_OPTIONS;
    const brokerTransportOptions = transport === undefined ? undefined : parseJson(transport, '--broker-transport-options', 'a JSON object');
    if (
      brokerTransportOptions !== undefined &&
      (typeof brokerTransportOptions !== 'object' || brokerTransportOptions === null || Array.isArray(brokerTransportOptions))
    ) {
      throw new ValidationError(['--broker-transport-options must be a JSON object, e.g. \'{"global_keyprefix": "pfx:"}\'']);
    }
    const masterName = g.backendMasterName ?? io.env.CELERY_LONGTERM_SCHEDULER_MASTER_NAME;
    return new Celery({
      ...(brokerTransportOptions !== undefined && { brokerTransportOptions: brokerTransportOptions as Record<string, unknown> }),
      ...(masterName !== undefined && { longtermSchedulerMasterName: masterName }),
      broker: g.broker ?? io.env.CELERY_BROKER_URL ?? CELERY_DEFAULTS.broker,
      longtermSchedulerBackend: backendUrl(),
      longtermSchedulerKeyPrefix: g.keyPrefix ?? io.env.CELERY_LONGTERM_SCHEDULER_KEY_PREFIX ?? '',
      taskDefaultQueue: g.defaultQueue ?? io.env.CELERY_TASK_DEFAULT_QUEUE ?? CELERY_DEFAULTS.taskDefaultQueue,
      ...(g.migrate && { longtermSchedulerMigrate: true }),
      logger: logger(),
      ...extra,
    });
  };

  const withApp = async <T>(fn: (a: Celery) => Promise<T>, extra?: Pick<CeleryConfig, 'resultBackend'>): Promise<T> => {
    const a = app(extra);
    try {
      return await fn(a);
    } finally {
      await a.close();
    }
  };

  return { io, globals, backendUrl, logger, withApp };
}
