/**
 * TLS settings as Celery writes them in a broker or backend URL's query (for `rediss://` and
 * `amqps://`): `ssl_cert_reqs` (none | optional | required, or CERT_NONE / CERT_OPTIONAL /
 * CERT_REQUIRED; default required), `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (file paths).
 */
import { readFileSync } from 'node:fs';

export interface TlsSettings {
  servername: string;
  rejectUnauthorized: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Reads the TLS query options of `u`; each problem (with its fix) is pushed onto `problems`. */
export function tlsFromCeleryQuery(u: URL, what: string, problems: string[]): TlsSettings {
  const q = u.searchParams;
  const reqs = (q.get('ssl_cert_reqs') ?? 'required').toLowerCase().replace(/^cert_/, '');
  if (!['none', 'optional', 'required'].includes(reqs)) {
    problems.push(`${what} URL has ssl_cert_reqs=${JSON.stringify(q.get('ssl_cert_reqs'))}; use none, optional or required`);
  }
  const file = (name: string): Buffer | undefined => {
    const path = q.get(name);
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch {
      problems.push(`${what} URL names ${name}=${path}, which cannot be read; check the path`);
      return undefined;
    }
  };
  const ca = file('ssl_ca_certs');
  const cert = file('ssl_certfile');
  const key = file('ssl_keyfile');
  return {
    servername: u.hostname,
    rejectUnauthorized: reqs === 'required',
    ...(ca && { ca }),
    ...(cert && { cert }),
    ...(key && { key }),
  };
}
