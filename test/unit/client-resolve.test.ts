/**
 * resolve(): libpq's precedence (string > service > environment > compiled default), the legacy spellings, the
 * ~/.postgresql defaults, ~/.pgpass, hosts and ports, and every value check with libpq's text. Also the client key
 * permission rule of loadTlsMaterial(), passing and failing.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ClientError } from '../../src/client/errors.js';
import { DEFAULT_SOCKET_DIR, redactedParams, resolve } from '../../src/client/resolve.js';
import { loadTlsMaterial } from '../../src/client/tls-files.js';
import { createClientCert, createRootCA } from '../../src/pki/generate.js';

const home = mkdtempSync(join(tmpdir(), 'pgtls-resolve-home-'));
const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });
const opts = { osUser: 'osuser' };
const refuses = (input: string, message: string, e: Record<string, string> = {}) =>
  assert.throws(
    () => resolve(input, env(e), opts),
    (err: unknown) => err instanceof ClientError && err.message === message,
  );

test('defaults: prefer, TLSv1.2 minimum, ~/.postgresql files, OS user, dbname = user, Unix socket', () => {
  const plan = resolve('', env(), opts);
  assert.equal(plan.ssl.mode, 'prefer');
  assert.equal(plan.ssl.modeExplicit, false);
  assert.equal(plan.ssl.minVersion, 'TLSv1.2');
  assert.equal(plan.ssl.maxVersion, '');
  assert.equal(plan.ssl.rootCert, join(home, '.postgresql/root.crt'));
  assert.equal(plan.ssl.crl, join(home, '.postgresql/root.crl'));
  assert.equal(plan.ssl.cert, join(home, '.postgresql/postgresql.crt'));
  assert.equal(plan.ssl.key, join(home, '.postgresql/postgresql.key'));
  assert.equal(plan.ssl.sni, true);
  assert.equal(plan.user, 'osuser');
  assert.equal(plan.database, 'osuser');
  assert.deepEqual(plan.hosts, [{ kind: 'socket', host: DEFAULT_SOCKET_DIR, hostaddr: '', port: '5432' }]);
  assert.deepEqual(plan.methods, ['ssl', 'plain']);
  assert.ok(Object.isFrozen(plan) && Object.isFrozen(plan.ssl) && Object.isFrozen(plan.hosts));
  assert.equal(plan.sources.sslmode, 'default');
});

test('precedence: connection string over environment over compiled default', () => {
  const e = env({
    PGSSLMODE: 'require',
    PGHOST: 'envhost',
    PGPORT: '6000',
    PGUSER: 'envuser',
    PGSSLROOTCERT: '/env/root.crt',
  });
  const fromEnv = resolve('dbname=x', e, opts);
  assert.equal(fromEnv.ssl.mode, 'require');
  assert.equal(fromEnv.sources.sslmode, 'env');
  assert.deepEqual(fromEnv.hosts[0], { kind: 'name', host: 'envhost', hostaddr: '', port: '6000' });
  assert.equal(fromEnv.user, 'envuser');
  assert.equal(fromEnv.ssl.rootCert, '/env/root.crt');
  const fromString = resolve('sslmode=disable host=h port=1 user=u sslrootcert=/s.crt', e, opts);
  assert.equal(fromString.ssl.mode, 'disable');
  assert.equal(fromString.sources.sslmode, 'conninfo');
  assert.deepEqual(fromString.methods, ['plain']);
  assert.equal(fromString.ssl.rootCert, '/s.crt');
  const fromUri = resolve('postgresql://h/db?sslmode=verify-ca', e, opts);
  assert.equal(fromUri.sources.sslmode, 'uri');
  assert.equal(fromUri.database, 'db');
});

test('PGREQUIRESSL=1 means require unless PGSSLMODE is set; requiressl in the string is rewritten', () => {
  assert.equal(resolve('', env({ PGREQUIRESSL: '1' }), opts).ssl.mode, 'require');
  assert.equal(resolve('', env({ PGREQUIRESSL: '0' }), opts).ssl.mode, 'prefer');
  assert.equal(resolve('', env({ PGREQUIRESSL: '1', PGSSLMODE: 'allow' }), opts).ssl.mode, 'allow');
  assert.equal(resolve('requiressl=1', env({ PGSSLMODE: 'disable' }), opts).ssl.mode, 'require');
  assert.equal(resolve('postgresql://h/?ssl=true', env(), opts).ssl.mode, 'require');
});

test('sslrootcert=system: default mode becomes verify-full; weaker modes refused with libpq text', () => {
  const plan = resolve('sslrootcert=system', env({ SSL_CERT_FILE: '/x.pem' }), opts);
  assert.equal(plan.ssl.mode, 'verify-full');
  assert.deepEqual(plan.systemStore, { file: '/x.pem' });
  refuses(
    'sslrootcert=system sslmode=require',
    'weak sslmode "require" may not be used with sslrootcert=system (use "verify-full")',
  );
  refuses('sslrootcert=system', 'weak sslmode "prefer" may not be used with sslrootcert=system (use "verify-full")', {
    PGSSLMODE: 'prefer',
  });
});

test('direct negotiation needs require or stronger; methods follow sslmode', () => {
  assert.deepEqual(resolve('sslmode=require sslnegotiation=direct', env(), opts).methods, ['direct']);
  assert.deepEqual(resolve('sslmode=allow', env(), opts).methods, ['plain', 'ssl']);
  refuses(
    'sslnegotiation=direct',
    'weak sslmode "prefer" may not be used with sslnegotiation=direct (use "require", "verify-ca", or "verify-full")',
  );
});

test('value checks carry libpq text', () => {
  refuses('sslmode=bogus', 'invalid sslmode value: "bogus"');
  refuses('', 'invalid sslmode value: ""', { PGSSLMODE: '' });
  refuses('sslnegotiation=x', 'invalid sslnegotiation value: "x"');
  refuses('sslcertmode=x', 'invalid sslcertmode value: "x"');
  refuses('channel_binding=x', 'invalid channel_binding value: "x"');
  refuses('target_session_attrs=x', 'invalid target_session_attrs value: "x"');
  refuses('load_balance_hosts=x', 'invalid load_balance_hosts value: "x"');
  refuses('require_auth=foo', 'invalid require_auth value: "foo"');
  refuses('ssl_min_protocol_version=TLSv9', 'invalid "ssl_min_protocol_version" value: "TLSv9"');
  refuses('ssl_max_protocol_version=SSLv3', 'invalid "ssl_max_protocol_version" value: "SSLv3"');
  refuses('ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2', 'invalid SSL protocol version range');
  refuses('gssencmode=require', 'gssencmode value "require" invalid when GSSAPI support is not compiled in');
  refuses('host=a,b port=1,2,3', 'could not match 3 port numbers to 2 hosts');
  refuses('host=a,b hostaddr=127.0.0.1', 'could not match 2 host names to 1 hostaddr values');
  // reported by libpq only when the first connection starts (with its prefix): connect() does the same
  assert.equal(
    resolve('connect_timeout=abc', env(), opts).deferredError,
    'invalid integer value "abc" for connection option "connect_timeout"',
  );
  refuses('service=nope', 'definition of service "nope" not found');
  assert.equal(resolve('ssl_min_protocol_version=tlsv1.3', env(), opts).ssl.minVersion, 'TLSv1.3');
});

test('hosts: names, addresses, sockets, one port for all, hostaddr keeps host for verification', () => {
  const plan = resolve('host=a,/tmp,,10.0.0.1 port=7', env(), opts);
  assert.deepEqual(
    plan.hosts.map((h) => [h.kind, h.host, h.port]),
    [
      ['name', 'a', '7'],
      ['socket', '/tmp', '7'],
      ['socket', DEFAULT_SOCKET_DIR, '7'],
      ['name', '10.0.0.1', '7'],
    ],
  );
  const addr = resolve('host=db.example.com hostaddr=127.0.0.1', env(), opts);
  assert.deepEqual(addr.hosts[0], { kind: 'address', host: 'db.example.com', hostaddr: '127.0.0.1', port: '5432' });
  // only hostaddr: libpq keeps the default socket directory as "host" (what verify-full then compares)
  assert.equal(resolve('hostaddr=127.0.0.1', env(), opts).hosts[0]!.host, DEFAULT_SOCKET_DIR);
});

test('service file and ~/.pgpass (with its permission rule)', () => {
  const svc = join(home, '.pg_service.conf');
  writeFileSync(svc, '# comment\n[mydb]\nhost=svc.example.com\nsslmode=verify-ca\nport=6543\n[other]\nhost=x\n');
  const plan = resolve('service=mydb port=1', env(), opts);
  assert.equal(plan.hosts[0]!.host, 'svc.example.com');
  assert.equal(plan.hosts[0]!.port, '1');
  assert.equal(plan.ssl.mode, 'verify-ca');
  assert.equal(plan.sources.sslmode, 'service');
  const pgpass = join(home, 'pgpass');
  writeFileSync(pgpass, 'svc.example.com:1:*:osuser:s3cr\\:et\n*:*:*:*:fallback\n');
  chmodSync(pgpass, 0o600);
  assert.equal(resolve(`service=mydb port=1 passfile=${pgpass}`, env(), opts).hosts[0]!.password, 's3cr:et');
  assert.equal(resolve(`host=other passfile=${pgpass}`, env(), opts).hosts[0]!.password, 'fallback');
  assert.equal(resolve(`host=other password=given passfile=${pgpass}`, env(), opts).hosts[0]!.password, 'given');
  chmodSync(pgpass, 0o644);
  const loose = resolve(`host=other passfile=${pgpass}`, env(), opts);
  assert.equal(loose.hosts[0]!.password, undefined);
  assert.deepEqual(loose.warnings, [
    `WARNING: password file "${pgpass}" has group or world access; permissions should be u=rw (0600) or less`,
  ]);
});

test('client key permissions: libpq rule and message, passing and failing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-keyperm-'));
  mkdirSync(join(dir, 'x'));
  const ca = await createRootCA({ subject: { CN: 'perm CA' } });
  const leaf = await createClientCert(ca, { subject: { CN: 'u' } });
  const crt = join(dir, 'c.crt');
  const key = join(dir, 'c.key');
  writeFileSync(crt, leaf.certPem);
  writeFileSync(key, leaf.keyPem);
  const material = (mode: number, uid?: number) => {
    chmodSync(key, mode);
    if (uid !== undefined && process.getuid?.() === 0) chownSync(key, uid, uid);
    return loadTlsMaterial(resolve(`sslmode=require sslcert=${crt} sslkey=${key}`, env(), opts));
  };
  const message = `private key file "${key}" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root`;
  assert.equal(material(0o600).ok, true);
  assert.equal(material(0o400).ok, true);
  const loose = material(0o644);
  assert.equal(loose.ok, false);
  if (!loose.ok) {
    assert.equal(loose.message, message);
    assert.match(loose.reason ?? '', /mode 0644/);
  }
  if (process.getuid?.() === 0) {
    // root-owned: 0640 is allowed (system-wide keys read through a group), 0660 is not
    assert.equal(material(0o640, 0).ok, true);
    assert.equal(material(0o660, 0).ok, false);
    // owned by someone else: 0640 is refused
    const other = material(0o640, 4321);
    assert.equal(other.ok, false);
    if (!other.ok) assert.equal(other.message, message);
    chownSync(key, 0, 0);
  }
  const missingKey = loadTlsMaterial(resolve(`sslmode=require sslcert=${crt} sslkey=${key}.nope`, env(), opts));
  assert.deepEqual(missingKey, { ok: false, message: `certificate present, but not private key file "${key}.nope"` });
  const dirKey = loadTlsMaterial(resolve(`sslmode=require sslcert=${crt} sslkey=${join(dir, 'x')}`, env(), opts));
  assert.deepEqual(dirKey, { ok: false, message: `private key file "${join(dir, 'x')}" is not a regular file` });
  // no certificate: the key is not even looked at
  assert.equal(loadTlsMaterial(resolve(`sslmode=require sslcert=${crt}.nope sslkey=/nope`, env(), opts)).ok, true);
  // verify-ca without a root file: libpq's message and hint
  const noRoot = loadTlsMaterial(resolve('sslmode=verify-ca', env(), opts));
  assert.deepEqual(noRoot, {
    ok: false,
    message: `root certificate file "${join(home, '.postgresql/root.crt')}" does not exist\nEither provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.`,
  });
});

test('redactedParams hides secrets', () => {
  const plan = resolve('password=hunter2 sslpassword=k host=h', env(), opts);
  const shown = redactedParams(plan);
  assert.equal(shown.password, '********');
  assert.equal(shown.sslpassword, '********');
  assert.equal(shown.host, 'h');
});

test('options objects: like PQconnectdbParams (unknown keys refused, empty values ignored, dbname expanded)', () => {
  const plan = resolve(
    { host: 'h', port: 5433, sslmode: 'require', sslcert: '', dbname: 'postgresql://x/db?sslsni=0' },
    env(),
    opts,
  );
  assert.equal(plan.ssl.mode, 'require');
  assert.equal(plan.ssl.sni, false);
  assert.equal(plan.database, 'db');
  assert.throws(() => resolve({ bogus: 1 }, env(), opts), /invalid connection option "bogus"/);
});
