/**
 * Exit codes, and the one place that turns what a command threw into one: 0 ok, 1 failure or
 * not found, 2 usage error (bad flags or bad input). An error is reported as one redacted line on
 * stderr; commander's own errors were already printed by commander.
 */
import { CommanderError } from 'commander';
import { SchedulerError, ValidationError, ErrorCode, errorMessage, redactUrlsIn } from '../util/errors.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/** Ends a command with this exit code, after what it printed (nothing more is printed). */
export class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** The exit code for what a command threw; prints the error line when nothing printed it yet. */
export function exitCodeOf(err: unknown, stderr: (text: string) => void): number {
  if (err instanceof ExitWith) return err.code;
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return EXIT.OK;
    return EXIT.USAGE; // commander already printed the message
  }
  return reportError(err, stderr);
}

function reportError(err: unknown, stderr: (text: string) => void): number {
  const message = errorMessage(err);
  stderr(`error: ${redactUrlsIn(message.split('\n', 1)[0] ?? message)}\n`);
  if (err instanceof ValidationError) return EXIT.USAGE;
  if (err instanceof SchedulerError && err.code === ErrorCode.INVALID_ARGUMENT) return EXIT.USAGE;
  return EXIT.FAILURE;
}
