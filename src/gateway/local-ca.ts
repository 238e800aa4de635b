/**
 * The zero-config local CA: on first start, a root CA and an ECDSA P-256 server certificate for localhost,
 * 127.0.0.1, ::1 and this host's name, under the data directory. Later starts reuse them.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createRootCA, createServerCert } from '../pki/generate.js';

export interface LocalCaFiles {
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly created: boolean;
}

async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

export async function ensureLocalCa(dataDir: string): Promise<LocalCaFiles> {
  const dir = join(dataDir, 'tls');
  const files = {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
  };
  if (Object.values(files).every((f) => existsSync(f))) return { ...files, created: false };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const host = hostname();
  const ca = await createRootCA({ subject: { CN: `pgtls local CA (${host})`, O: 'pgtls' } });
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', host])];
  const server = await createServerCert(ca, { subject: { CN: 'localhost' }, hosts, keyType: 'ec-p256' });
  await writeAtomic(files.caKey, ca.keyPem, 0o600);
  await writeAtomic(files.caCert, ca.certPem, 0o644);
  await writeAtomic(files.serverKey, server.keyPem, 0o600);
  await writeAtomic(files.serverCert, server.certPem, 0o644);
  return { ...files, created: true };
}
