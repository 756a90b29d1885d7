#!/usr/bin/env -S node --max-semi-space-size=64
import { createInterface } from 'node:readline/promises';
import { runCli } from './program.js';

/** One line typed on the terminal, or undefined when stdin is not one (a pipe, cron, CI). */
async function ask(question: string): Promise<string | undefined> {
  if (process.stdin.isTTY !== true) return undefined;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

const code = await runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  onSignal: (handler) => {
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  },
  exitNow: (code) => process.exit(code),
  isTty: () => process.stderr.isTTY === true,
  ask,
});
process.exitCode = code;
