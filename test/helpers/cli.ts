/** Runs the CLI in-process, as `celery-longterm-scheduler ...argv`, capturing its output. */
import { runCli } from '../../src/cli/program.js';

export async function cli(argv: readonly string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env });
  return { code, stdout, stderr };
}
