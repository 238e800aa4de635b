/**
 * Certificates for the gateway tests, generated at test time with pgtls's own pki/generate:
 * root → intermediate → server chain (localhost, 127.0.0.1, ::1), a wrong-host, an expired and a self-signed
 * server, a client CA with client certificates by CN (one revoked, with its CRL) and one from an unrelated CA.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Issued,
  createCRL,
  createClientCert,
  createIntermediateCA,
  createRootCA,
  createServerCert,
} from '../../src/pki/generate.js';

export interface Pair {
  readonly cert: string;
  readonly key: string;
}

export interface GatewayFixtures {
  readonly dir: string;
  readonly root: string;
  /** leaf + intermediate: what ssl_cert_file holds */
  readonly server: Pair;
  readonly serverRsa: Pair;
  readonly wrongHost: Pair;
  readonly expired: Pair;
  readonly selfSigned: Pair;
  readonly clientCa: string;
  readonly clientCrl: string;
  readonly clients: Readonly<Record<string, Pair>>;
  readonly unrelatedClient: Pair;
  readonly revokedSerial: string;
  readonly rootIssued: Issued;
  readonly clientCaIssued: Issued;
}

export async function makeFixtures(): Promise<GatewayFixtures> {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-fx-'));
  chmodSync(dir, 0o755);
  const w = (name: string, content: string, mode = 0o644) => {
    const p = join(dir, name);
    writeFileSync(p, content, { mode });
    chmodSync(p, mode);
    return p;
  };
  const pair = (name: string, i: Issued, chain: Issued[] = []): Pair => ({
    cert: w(`${name}.crt`, [i.certPem, ...chain.map((c) => c.certPem)].join('')),
    key: w(`${name}.key`, i.keyPem, 0o600),
  });
  const root = await createRootCA({ subject: { CN: 'pgtls test root' } });
  const inter = await createIntermediateCA(root, { subject: { CN: 'pgtls test intermediate' } });
  const hosts = ['localhost', '127.0.0.1', '::1'];
  const server = await createServerCert(inter, { subject: { CN: 'localhost' }, hosts });
  const serverRsa = await createServerCert(inter, { subject: { CN: 'localhost' }, hosts, keyType: 'rsa-2048' });
  const wrongHost = await createServerCert(inter, { subject: { CN: 'db.example.com' }, hosts: ['db.example.com'] });
  const expired = await createServerCert(inter, {
    subject: { CN: 'localhost' },
    hosts,
    notBefore: new Date(Date.now() - 20 * 86_400_000),
    notAfter: new Date(Date.now() - 10 * 86_400_000),
  });
  const selfSigned = await createRootCA({ subject: { CN: 'localhost' } });
  const clientCa = await createRootCA({ subject: { CN: 'pgtls test client CA' } });
  const clients: Record<string, Pair> = {};
  let revokedSerial = '';
  for (const user of ['alice', 'bob', 'carol', 'mallory', 'app_reader']) {
    const c = await createClientCert(clientCa, { subject: { CN: user, O: 'pgtls tests' } });
    clients[user] = pair(`client-${user}`, c);
    if (user === 'mallory') revokedSerial = c.serial;
  }
  const crl = await createCRL(clientCa, [{ serial: revokedSerial }]);
  const otherCa = await createRootCA({ subject: { CN: 'unrelated CA' } });
  const unrelated = await createClientCert(otherCa, { subject: { CN: 'alice' } });
  return {
    dir,
    root: w('root.crt', root.certPem),
    server: pair('server', server, [inter]),
    serverRsa: pair('server-rsa', serverRsa, [inter]),
    wrongHost: pair('wrong-host', wrongHost, [inter]),
    expired: pair('expired', expired, [inter]),
    selfSigned: pair('self-signed', selfSigned),
    clientCa: w('client-ca.crt', clientCa.certPem),
    clientCrl: w('client.crl', crl),
    clients,
    unrelatedClient: pair('client-unrelated', unrelated),
    revokedSerial,
    rootIssued: root,
    clientCaIssued: clientCa,
  };
}

/** Issue one more client certificate from the client CA (for map tests), written into the fixtures directory. */
export async function extraClient(fx: GatewayFixtures, name: string, subject: Record<string, string>): Promise<Pair> {
  const c = await createClientCert(fx.clientCaIssued, { subject });
  return {
    cert: writeFixture(fx, `${name}.crt`, c.certPem),
    key: writeFixture(fx, `${name}.key`, c.keyPem, 0o600),
  };
}

/** startTestCluster options for a PostgreSQL with ssl = on serving the fixtures' good chain (server.crt/server.key). */
export function sslClusterOptions(fx: GatewayFixtures) {
  return {
    files: { 'server.crt': readFileSync(fx.server.cert), 'server.key': readFileSync(fx.server.key) },
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' },
  };
}

/** Write a file into the fixtures directory (configs, hba files) and return its path. */
export function writeFixture(fx: GatewayFixtures, name: string, content: string, mode = 0o644): string {
  const p = join(fx.dir, name);
  writeFileSync(p, content, { mode });
  chmodSync(p, mode);
  return p;
}
