/**
 * `migrate-schema`: creates or upgrades the --backend store's schema (PostgreSQL), or with
 * --status only reports the version found and the one this code needs. It opens the store alone,
 * never the broker.
 */
import type { Command } from 'commander';
import { migrateStoreSchema } from '../../admin/schema.js';
import type { CliContext } from '../context.js';

export function addMigrateSchemaCommand(program: Command, ctx: CliContext): void {
  program
    .command('migrate-schema')
    .description("create or upgrade the store's schema (PostgreSQL); SQLite files upgrade themselves, Redis has none")
    .option('--status', 'only print the version found and the version this code needs; change nothing')
    .option('--json', 'print the result as JSON')
    .action(async (o: { status?: boolean; json?: boolean }) => {
      const result = await migrateStoreSchema(ctx.backendUrl(), { statusOnly: o.status === true });
      if (o.json) ctx.io.stdout(`${JSON.stringify(result)}\n`);
      else ctx.io.stdout(`${result.message}\n`);
    });
}
