/**
 * amqps:// with Celery's certificate options, and the heartbeat option, against a private
 * RabbitMQ node that listens for TLS with a throwaway CA made by openssl.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../../src/exports/brokers.js';
import { ConnectionError } from '../../../src/index.js';
import { Dispatcher } from '../../../src/exports/dispatch.js';
import { MemoryStore } from '../../../src/exports/stores.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { makeTestCertificates, opensslAvailable, type TestCertificates } from '../../helpers/certs.js';
import { privateRabbitmq, requireService, uniquePrefix, type RabbitService } from '../../helpers/services.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-amqps-'));
const certs: TestCertificates | undefined = opensslAvailable ? makeTestCertificates(dir) : undefined;
const rabbit = certs ? await privateRabbitmq({ tls: { cacertfile: certs.ca, certfile: certs.cert, keyfile: certs.key } }) : undefined;
const skip = requireService(certs, 'openssl') || requireService(rabbit, 'rabbitmq-server (for a private TLS node)');

describe.skipIf(skip)('amqps:// and heartbeats on a private RabbitMQ', () => {
  const queue = `${uniquePrefix('amqps')}q`;
  let node: RabbitService;

  beforeAll(async () => {
    node = rabbit as RabbitService;
    const conn = await amqp.connect(node.url);
    await (await conn.createChannel()).assertQueue(queue, { durable: true });
    await conn.close();
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  async function dispatchOne(broker: AmqpBroker): Promise<{ id: string; sent: number }> {
    const store = new MemoryStore();
    const { job } = resolveTaskCall('t.amqps', [1], {}, { queue });
    await store.add([{ id: job.id, dueAt: Date.now() / 1000 - 1, entry: encodeEntry(job) }]);
    const summary = await new Dispatcher({ store, broker }).dispatchDue();
    if (summary.error) throw summary.error;
    return { id: job.id, sent: summary.sent };
  }

  it('dispatches over TLS when the URL names the CA, and the message arrives', async () => {
    const broker = new AmqpBroker(`${node.tlsUrl}?ssl_cert_reqs=required&ssl_ca_certs=${certs!.ca}`);
    try {
      const { id, sent } = await dispatchOne(broker);
      expect(sent).toBe(1);
      const conn = await amqp.connect(node.url);
      const msg = await (await conn.createChannel()).get(queue, { noAck: true });
      await conn.close();
      expect(msg && msg.properties.headers?.id).toBe(id);
    } finally {
      await broker.close();
    }
  });

  it('refuses a server it cannot verify with a one-line ConnectionError that hides the password', async () => {
    const broker = new AmqpBroker(node.tlsUrl!, { connectTimeout: 3 });
    try {
      const err = await broker.publish([]).then(
        () => undefined,
        (e: unknown) => e,
      );
      const failure =
        err ??
        (await dispatchOne(broker).then(
          () => undefined,
          (e: unknown) => e,
        ));
      expect(failure).toBeInstanceOf(ConnectionError);
      const message = (failure as Error).message;
      expect(message).toMatch(/^cannot reach the Celery broker \(RabbitMQ\) at amqps:\/\/guest:\*\*\*@localhost:\d+\/\/: .*certificate/);
      expect(message).not.toContain('guest@');
      expect(message.split('\n')).toHaveLength(1);
    } finally {
      await broker.close();
    }
  });

  it('negotiates the heartbeat given in the URL (Celery: ?heartbeat=N)', async () => {
    const broker = new AmqpBroker(`${node.url}?heartbeat=7`);
    try {
      await dispatchOne(broker);
      const timeouts = node.ctl('list_connections', 'timeout', '--quiet', '--no-table-headers').trim().split(/\s+/);
      expect(timeouts).toContain('7');
    } finally {
      await broker.close();
    }
  });
});
