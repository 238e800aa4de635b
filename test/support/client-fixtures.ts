/**
 * Fixtures for the pgtls/client tests: a PKI generated at test time, a real PostgreSQL 18 with ssl=on whose server
 * certificate can be swapped (files + reload), and the side-by-side runner that connects with psql (libpq 18) and
 * with pgtls/client through node-postgres, reducing both to one comparable outcome.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pgtlsPg } from '../../src/client/adapters/pg.js';
import { ClientError, connectError } from '../../src/client/errors.js';
import type { PgtlsSocket } from '../../src/client/stream.js';
import { writeCrlDirectory } from '../../src/pki/crl.js';
import {
  type Issued,
  createCRL,
  createClientCert,
  createIntermediateCA,
  createRootCA,
  createServerCert,
} from '../../src/pki/generate.js';
import { cleanEnv, psql } from './clients.js';
import { type TestCluster, startTestCluster } from './postgres.js';

export interface Pki {
  readonly dir: string;
  readonly root: Issued;
  readonly intermediate: Issued;
  readonly otherRoot: Issued;
  /** File paths on the client side. */
  readonly files: Readonly<Record<string, string>>;
  /** Server certificate variants: name → { crt (chain), key }. */
  readonly servers: Readonly<Record<string, { crt: string; key: string }>>;
}

const DAY = 86_400_000;

export async function makePki(): Promise<Pki> {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-client-pki-'));
  const root = await createRootCA({ subject: { CN: 'pgtls test root' } });
  const intermediate = await createIntermediateCA(root, { subject: { CN: 'pgtls test intermediate' } });
  const otherRoot = await createRootCA({ subject: { CN: 'unrelated root' } });
  const leaf = (hosts: string[], subject: string, opts: { notBefore?: Date; notAfter?: Date } = {}) =>
    createServerCert(intermediate, { subject: { CN: subject }, hosts, ...opts });
  const good = await leaf(['localhost', '127.0.0.1'], 'localhost');
  const cnOnly = await leaf([], 'localhost');
  const cnIp = await leaf([], '127.0.0.1');
  const wrong = await leaf(['other.example.com'], 'other.example.com');
  const wildcard = await leaf(['*.pgtls.test'], 'wildcard');
  const ipOnly = await leaf(['127.0.0.1'], 'localhost');
  const dnsAndCn = await leaf(['db.pgtls.test'], 'localhost');
  const multi = await leaf(['a.example.com', 'b.example.com', '10.0.0.1'], 'x');
  const ipv6 = await leaf(['::1', 'db.pgtls.test'], 'localhost');
  const cnWildcard = await leaf([], '*.pgtls.test');
  const nul = await leaf(['localhost\u0000.evil.test'], 'localhost');
  const expired = await leaf(['localhost', '127.0.0.1'], 'localhost', {
    notBefore: new Date(Date.now() - 400 * DAY),
    notAfter: new Date(Date.now() - 10 * DAY),
  });
  const revoked = await leaf(['localhost', '127.0.0.1'], 'localhost');
  const selfSigned = await createRootCA({ subject: { CN: 'localhost' } });
  const rsa = await createServerCert(intermediate, {
    subject: { CN: 'localhost' },
    hosts: ['localhost', '127.0.0.1'],
    keyType: 'rsa-2048',
  });
  const notYet = await leaf(['localhost', '127.0.0.1'], 'localhost', {
    notBefore: new Date(Date.now() + 10 * DAY),
    notAfter: new Date(Date.now() + 400 * DAY),
  });
  // an intermediate with pathlen 0 that nevertheless signs another CA: the chain breaks the constraint
  const inter2 = await createIntermediateCA(intermediate, { subject: { CN: 'second intermediate' } });
  const deep = await createServerCert(inter2, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
  // a "server" certificate that is really a client certificate (clientAuth only)
  const clientAsServer = await createClientCert(intermediate, { subject: { CN: 'localhost' } });
  const chain = (c: Issued) => c.certPem + intermediate.certPem;
  const servers = {
    good: { crt: chain(good), key: good.keyPem },
    'cn-only': { crt: chain(cnOnly), key: cnOnly.keyPem },
    'cn-ip': { crt: chain(cnIp), key: cnIp.keyPem },
    'wrong-host': { crt: chain(wrong), key: wrong.keyPem },
    wildcard: { crt: chain(wildcard), key: wildcard.keyPem },
    'ip-san': { crt: chain(ipOnly), key: ipOnly.keyPem },
    'dns-san-and-cn': { crt: chain(dnsAndCn), key: dnsAndCn.keyPem },
    multi: { crt: chain(multi), key: multi.keyPem },
    ipv6: { crt: chain(ipv6), key: ipv6.keyPem },
    'cn-wildcard': { crt: chain(cnWildcard), key: cnWildcard.keyPem },
    'embedded-nul': { crt: chain(nul), key: nul.keyPem },
    expired: { crt: chain(expired), key: expired.keyPem },
    revoked: { crt: chain(revoked), key: revoked.keyPem },
    'self-signed': { crt: selfSigned.certPem, key: selfSigned.keyPem },
    'leaf-only': { crt: good.certPem, key: good.keyPem },
    'full-chain': { crt: chain(good) + root.certPem, key: good.keyPem },
    rsa: { crt: chain(rsa), key: rsa.keyPem },
    'not-yet-valid': { crt: chain(notYet), key: notYet.keyPem },
    pathlen: { crt: deep.certPem + inter2.certPem + intermediate.certPem, key: deep.keyPem },
    'client-eku': { crt: chain(clientAsServer), key: clientAsServer.keyPem },
  };
  const client = await createClientCert(intermediate, { subject: { CN: 'certuser' } });
  const wrongClient = await createClientCert(intermediate, { subject: { CN: 'someoneelse' } });
  const strangerCa = await createRootCA({ subject: { CN: 'stranger' } });
  const strangerClient = await createClientCert(strangerCa, { subject: { CN: 'certuser' } });
  const crlInter = await createCRL(intermediate, [{ serial: revoked.serial }]);
  const crlInterEmpty = await createCRL(intermediate, []);
  const crlRoot = await createCRL(root, []);
  const files: Record<string, string> = {};
  const put = (name: string, content: string | Buffer, mode = 0o644) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    files[name] = p;
  };
  put('root.crt', root.certPem);
  put('intermediate.crt', intermediate.certPem);
  put('bundle.crt', root.certPem + intermediate.certPem);
  put('other-root.crt', otherRoot.certPem);
  put('self-signed.crt', selfSigned.certPem);
  put('garbage.crt', 'this is not a certificate\n');
  put('empty.crt', '');
  put('root.der', new X509Certificate(root.certPem).raw);
  put('client.crt', client.certPem + intermediate.certPem);
  put('client.key', client.keyPem, 0o600);
  put('client-0644.key', client.keyPem, 0o644);
  put('client-0640.key', client.keyPem, 0o640);
  put('wrong-client.crt', wrongClient.certPem + intermediate.certPem);
  put('wrong-client.key', wrongClient.keyPem, 0o600);
  put('stranger.crt', strangerClient.certPem);
  put('stranger.key', strangerClient.keyPem, 0o600);
  put('crl-revoked.pem', crlRoot + crlInter);
  put('crl-clean.pem', crlRoot + crlInterEmpty);
  put('crl-root-only.pem', crlRoot);
  // client keys in other encodings: encrypted PKCS#8 PEM (sslpassword), DER, SEC1 PEM
  const k = createPrivateKey(client.keyPem);
  put(
    'client-enc.key',
    k.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'key-secret' }) as string,
    0o600,
  );
  put('client-der.key', k.export({ format: 'der', type: 'pkcs8' }) as Buffer, 0o600);
  put('client-sec1.key', k.export({ format: 'pem', type: 'sec1' }) as string, 0o600);
  put('client-combined.pem', client.certPem + client.keyPem, 0o600);
  // an OpenSSL hashed certificate directory (for SSL_CERT_DIR) holding the root
  {
    const d = join(dir, 'certdir');
    mkdirSync(d);
    writeFileSync(join(d, 'root.pem'), root.certPem);
    execFileSync('openssl', ['rehash', d]);
    files.certdir = d;
  }
  // password and service files
  put('pgpass', 'localhost:*:*:pwuser:pw-secret\n*:*:*:*:wrong\n', 0o600);
  put('pgpass-loose', 'localhost:*:*:pwuser:pw-secret\n', 0o644);
  put(
    'services',
    `[verified]\nhost=localhost\nsslmode=verify-full\nsslrootcert=${files['root.crt']}\nuser=postgres\ndbname=postgres\n[weak]\nhost=localhost\nsslmode=require\nsslrootcert=${files['other-root.crt']}\nuser=postgres\n`,
  );
  // hashed CRL directories (c_rehash layout) for sslcrldir
  for (const [name, pems] of [
    ['crldir-revoked', [crlRoot, crlInter]],
    ['crldir-clean', [crlRoot, crlInterEmpty]],
  ] as const) {
    const d = join(dir, name);
    mkdirSync(d);
    await writeCrlDirectory(d, pems);
    files[name] = d;
  }
  // the intermediate's (clean) CRL under a name that is not its issuer hash: OpenSSL never finds it
  {
    const d = join(dir, 'crldir-misnamed');
    mkdirSync(d);
    await writeCrlDirectory(d, [crlRoot]);
    writeFileSync(join(d, '00000000.r0'), crlInterEmpty);
    files['crldir-misnamed'] = d;
  }
  return { dir, root, intermediate, otherRoot, files, servers };
}

export interface SslCluster {
  readonly cluster: TestCluster;
  readonly port: number;
  use(variant: string): Promise<void>;
  sql(sql: string): Promise<string>;
  destroy(): Promise<void>;
}

export const HBA = [
  'local all all trust',
  'hostnossl all plainonly 127.0.0.1/32 trust',
  'hostssl all sslonly 127.0.0.1/32 trust',
  'hostssl all certuser 127.0.0.1/32 cert',
  'hostssl all pwuser 127.0.0.1/32 scram-sha-256',
  'hostssl all mixuser 127.0.0.1/32 scram-sha-256',
  'hostnossl all mixuser 127.0.0.1/32 trust',
  'hostssl all clearuser 127.0.0.1/32 password',
  'hostnossl all clearuser 127.0.0.1/32 trust',
  'host all bothuser 127.0.0.1/32 scram-sha-256',
  'host all rouser 127.0.0.1/32 scram-sha-256',
  'host all postgres 127.0.0.1/32 trust',
  'host all postgres ::1/128 trust',
];

export async function startSslCluster(pki: Pki, settings: Record<string, string> = {}): Promise<SslCluster> {
  const cluster = await startTestCluster({
    files: {
      'server.crt': pki.servers.good!.crt,
      'server.key': pki.servers.good!.key,
      'ca.crt': pki.root.certPem,
    },
    settings: {
      listen_addresses: '127.0.0.1,::1',
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'ca.crt',
      ...settings,
    },
    hba: HBA,
  });
  const sql = async (text: string) => {
    const r = await psql(`host=${cluster.socketDir} port=${cluster.port} user=postgres dbname=postgres`, text);
    if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  await sql(
    "create role plainonly login; create role sslonly login; create role certuser login; create role pwuser login password 'pw-secret'; create role mixuser login password 'pw-secret'; create role clearuser login password 'pw-secret'; create role bothuser login password 'pw-secret'; create role rouser login password 'pw-secret'; alter role rouser set default_transaction_read_only = on",
  );
  let current = 'good';
  return {
    cluster,
    port: cluster.port,
    sql,
    use: async (variant: string) => {
      if (variant === current) return;
      const v = pki.servers[variant];
      if (!v) throw new Error(`no server variant ${variant}`);
      await cluster.install('server.crt', v.crt);
      await cluster.install('server.key', v.key);
      await cluster.reload();
      // SIGHUP is handled by the postmaster asynchronously; new backends then use the new SSL context.
      await new Promise((res) => setTimeout(res, 300));
      current = variant;
    },
    destroy: () => cluster.destroy(),
  };
}

export type Outcome =
  | { readonly result: 'connected'; readonly tls: boolean }
  | { readonly result: 'refused'; readonly message: string };

/** psql (libpq 18): connect and ask the server whether this session uses SSL. */
export async function psqlOutcome(conninfo: string, env: Record<string, string> = {}): Promise<Outcome> {
  // libpq 18 is the oracle; PGTLS_ORACLE_LIBPQ=15 runs the same comparisons against Debian's libpq 15, to see
  // where older libpq differs.
  const libpq = process.env.PGTLS_ORACLE_LIBPQ === '15' ? 15 : 18;
  const r = await psql(conninfo, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()', { libpq, env });
  if (r.code === 0) return { result: 'connected', tls: r.stdout.trim() === 't' };
  // psql prompts for a missing password on stderr before libpq's message; the prompt is psql's, not libpq's.
  return {
    result: 'refused',
    // (OpenSSL prompts for a key's pass phrase the same way)
    message: r.stderr
      .replace(/^Password for user .*: \n/, '')
      .replace(/^Enter PEM pass phrase:\n?/, '')
      .replace(/^psql: error: /, ''),
  };
}

/** pgtls/client through node-postgres, same question; a refusal is reported with libpq's full message. */
export async function pgtlsOutcome(conninfo: string, env: Record<string, string> = {}): Promise<Outcome> {
  const fullEnv = cleanEnv(env) as Record<string, string>;
  let sockets: PgtlsSocket[] = [];
  let config: ReturnType<typeof pgtlsPg>;
  try {
    config = pgtlsPg(conninfo, { env: fullEnv, onSocket: (s) => sockets.push(s) });
  } catch (err) {
    if (err instanceof ClientError) return { result: 'refused', message: err.libpqMessage };
    throw err;
  }
  const client = new pg.Client(config);
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    return { result: 'connected', tls: r.rows[0]?.ssl === true };
  } catch (err) {
    const sock = sockets[0];
    if (sock?.failure) return { result: 'refused', message: sock.failure.libpqMessage };
    if (sock && sock.attempts.failures.length > 0) {
      return { result: 'refused', message: connectError(sock.attempts.failures).libpqMessage };
    }
    if (err instanceof ClientError) return { result: 'refused', message: err.libpqMessage };
    return { result: 'refused', message: `(driver) ${(err as Error).message}` };
  } finally {
    await client.end().catch(() => undefined);
    sockets = [];
  }
}
