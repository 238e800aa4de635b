/**
 * pg_hosts.conf parsing and SNI selection, case by case from PostgreSQL 19's src/test/ssl/t/004_sni.pl and the
 * messages of parse_hosts_line() / be_tls_init() (commit 4f433025f66).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PgtlsError } from '../../src/errors.js';
import { ERR_HOSTS, type HostsConfig, readHostsFile, selectHost } from '../../src/hba/hosts.js';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'pgtls-hosts-'));
}
function hostsFile(text: string, d = dir()): string {
  const f = join(d, 'pg_hosts.conf');
  writeFileSync(f, text);
  return f;
}
function load(text: string): HostsConfig {
  const r = readHostsFile(hostsFile(text));
  assert.equal(r.status, 'ok');
  return (r as { hosts: HostsConfig }).hosts;
}
function fails(text: string, message: string, line: number): void {
  const f = hostsFile(text);
  assert.throws(
    () => readHostsFile(f),
    (e: unknown) => {
      assert.ok(e instanceof PgtlsError, String(e));
      assert.equal(e.code, ERR_HOSTS);
      assert.equal(e.message, `${message} (line ${line} of configuration file "${f}")`);
      assert.equal(e.details.line, line);
      return true;
    },
  );
}

describe('pg_hosts.conf: accepted', () => {
  test('the sample file (comments only) is empty; a missing file is missing', () => {
    const sample = [
      '# PostgreSQL SNI Hostname mappings',
      '# ================================',
      '',
      '# HOSTNAME       SSL CERTIFICATE             SSL KEY     SSL CA       PASSPHRASE COMMAND         PASSPHRASE COMMAND RELOAD',
      '',
    ].join('\n');
    assert.deepEqual(readHostsFile(hostsFile(sample)), { status: 'empty' });
    assert.deepEqual(readHostsFile(join(dir(), 'nope.conf')), { status: 'missing' });
  });

  test('all six fields; relative paths resolve against the file; a quoted command with blanks', () => {
    const d = dir();
    const f = hostsFile('localhost server-cn-only.crt server-password.key root+client_ca.crt "echo secret1" on\n', d);
    const r = readHostsFile(f);
    assert.equal(r.status, 'ok');
    const e = (r as { hosts: HostsConfig }).hosts.sni[0]!;
    assert.deepEqual(
      { ...e, hostnames: [...e.hostnames] },
      {
        file: f,
        line: 1,
        raw: 'localhost server-cn-only.crt server-password.key root+client_ca.crt "echo secret1" on',
        hostnames: ['localhost'],
        kind: 'names',
        ssl_cert_file: join(d, 'server-cn-only.crt'),
        ssl_key_file: join(d, 'server-password.key'),
        ssl_ca_file: join(d, 'root+client_ca.crt'),
        ssl_passphrase_command: 'echo secret1',
        ssl_passphrase_command_supports_reload: true,
      },
    );
  });

  test('the reload flag defaults to off; it takes every spelling of parse_bool()', () => {
    assert.equal(load('a c k ca "cmd"\n').sni[0]!.ssl_passphrase_command_supports_reload, false);
    for (const v of ['on', 'true', 'yes', '1', 'TRUE', 't', 'y']) {
      assert.equal(load(`a c k ca cmd ${v}\n`).sni[0]!.ssl_passphrase_command_supports_reload, true, v);
    }
    for (const v of ['off', 'false', 'no', '0', 'of', 'n']) {
      assert.equal(load(`a c k ca cmd ${v}\n`).sni[0]!.ssl_passphrase_command_supports_reload, false, v);
    }
  });

  test('an empty quoted CA field means no CA (to give a passphrase command without one)', () => {
    const e = load('a c k "" "echo x"\n').sni[0]!;
    assert.equal(e.ssl_ca_file, '');
    assert.equal(e.ssl_passphrase_command, 'echo x');
  });

  test('*, /no_sni/ and name lists are filed apart; @file adds names; includes work', () => {
    const d = dir();
    writeFileSync(join(d, 'hostnames.txt'), '\nexample.com\nexample.net\n');
    mkdirSync(join(d, 'conf.d'));
    writeFileSync(join(d, 'conf.d', 'b.conf'), 'db.b c k\n');
    writeFileSync(join(d, 'conf.d', 'a.conf'), 'db.a c k\n');
    writeFileSync(join(d, 'conf.d', 'ignored.txt'), 'not parsed\n');
    writeFileSync(join(d, 'more.conf'), 'more.test c k\n');
    const f = hostsFile(
      [
        '* default.crt default.key',
        '/no_sni/ nosni.crt nosni.key',
        'example.org,@hostnames.txt server.crt server.key root_ca.crt',
        'include more.conf',
        'include_if_exists absent.conf',
        'include_dir conf.d',
      ].join('\n'),
      d,
    );
    const r = readHostsFile(f);
    assert.equal(r.status, 'ok');
    const h = (r as { hosts: HostsConfig }).hosts;
    assert.equal(h.defaultHost?.ssl_cert_file, join(d, 'default.crt'));
    assert.equal(h.noSni?.ssl_cert_file, join(d, 'nosni.crt'));
    assert.deepEqual(
      h.sni.map((e) => [...e.hostnames]),
      [['example.org', 'example.com', 'example.net'], ['more.test'], ['db.a'], ['db.b']],
    );
    // Paths in an included file are relative to that file.
    assert.equal(h.sni[2]!.ssl_cert_file, join(d, 'conf.d', 'c'));
  });
});

describe('pg_hosts.conf: refused with PostgreSQL 19 messages', () => {
  test('a default entry combined with host names', () => {
    fails(
      'example.org,*,example.net server-cn-only+server_ca.crt server-cn-only.key root_ca.crt\n',
      'default and non-SNI entries cannot be mixed with other entries',
      1,
    );
    fails('/no_sni/,example.org c k\n', 'default and non-SNI entries cannot be mixed with other entries', 1);
  });
  test('two default entries, two /no_sni/ entries (reported at the second)', () => {
    fails('\n* a.crt a.key\n* a.crt a.key\n', 'multiple default hosts specified', 3);
    fails('/no_sni/ a.crt a.key\n/no_sni/ a.crt a.key\n', 'multiple no_sni hosts specified', 2);
  });
  test('the same host name twice, also across lists and letter case', () => {
    fails(
      'example.org a.crt a.key\nexample.net a.crt a.key\nexample.org a.crt a.key\n',
      'multiple entries for host "example.org" specified',
      3,
    );
    fails(
      'example.org a.crt a.key\nexample.net,example.com,Example.org a.crt a.key\n',
      'multiple entries for host "Example.org" specified',
      2,
    );
  });
  test('missing certificate or key', () => {
    fails('example.org\n', 'missing entry at end of line', 1);
    fails('example.org a.crt\n', 'missing entry at end of line', 1);
    // A malformed include line is an ordinary entry to PostgreSQL, and fails as one.
    fails('include\n', 'missing entry at end of line', 1);
  });
  test('lists where one value is expected', () => {
    fails('h a.crt,b.crt k\n', 'multiple values specified for SSL certificate', 1);
    fails('h c a.key,b.key\n', 'multiple values specified for SSL key', 1);
    fails('h c k ca1,ca2\n', 'multiple values specified for SSL CA', 1);
    fails('h c k ca cmd1,cmd2\n', 'multiple values specified for SSL passphrase command', 1);
  });
  test('useless data at the end of the line; a non-boolean reload flag', () => {
    fails(
      'example.org server-cn-only.crt server-cn-only.key root+client_ca.crt "cmd" on TRAILING_TEXT MORE_TEXT\n',
      'extra fields at end of line',
      1,
    );
    fails(
      'example.org server-cn-only.crt server-cn-only.key root+client_ca.crt "cmd" notabooleanvalue\n',
      'incorrect syntax for boolean value SSL_passphrase_cmd_reload',
      1,
    );
    fails('h c k ca cmd on,off\n', 'incorrect syntax for boolean value SSL_passphrase_cmd_reload', 1);
  });
  test('an include that cannot be read; a file that cannot be read', () => {
    const d = dir();
    const f = hostsFile('h c k\ninclude absent.conf\n', d);
    assert.throws(() => readHostsFile(f), {
      message: `could not open file "${join(d, 'absent.conf')}": No such file or directory (line 2 of configuration file "${f}")`,
    });
    if (process.getuid?.() !== 0) {
      const g = hostsFile('h c k\n');
      chmodSync(g, 0);
      assert.throws(() => readHostsFile(g), { message: `could not open file "${g}": Permission denied` });
    }
  });
});

describe('selection (sni_clienthello_cb)', () => {
  const full = load(
    [
      '* default.crt default.key',
      '/no_sni/ nosni.crt nosni.key',
      'example.org,example.com org.crt org.key root_ca.crt',
      'example.net net.crt net.key',
    ].join('\n'),
  );
  const pick = (h: HostsConfig, name: string | undefined) => {
    const s = selectHost(h, name);
    return 'entry' in s ? s.entry.ssl_cert_file.split('/').pop() : s.alert;
  };

  test('a listed name gets its entry, ignoring ASCII case', () => {
    assert.equal(pick(full, 'example.org'), 'org.crt');
    assert.equal(pick(full, 'Example.ORG'), 'org.crt');
    assert.equal(pick(full, 'example.com'), 'org.crt');
    assert.equal(pick(full, 'example.net'), 'net.crt');
  });
  test('an unknown name falls back to the default; no SNI prefers /no_sni/', () => {
    assert.equal(pick(full, 'example.se'), 'default.crt');
    assert.equal(pick(full, 'example.org.'), 'default.crt');
    assert.equal(pick(full, undefined), 'nosni.crt');
  });
  test('no /no_sni/ entry: clients without SNI get the default', () => {
    const h = load('* default.crt default.key\nexample.org org.crt org.key\n');
    assert.equal(pick(h, undefined), 'default.crt');
  });
  test('strict (no default): unknown names get unrecognized_name, no SNI gets handshake_failure', () => {
    const h = load('example.org org.crt org.key root_ca.crt\n');
    assert.equal(pick(h, 'example.org'), 'org.crt');
    assert.equal(pick(h, 'example.com'), 'unrecognized_name');
    assert.equal(pick(h, 'example'), 'unrecognized_name');
    assert.deepEqual(selectHost(h, undefined), {
      alert: 'handshake_failure',
      reason: 'no hostname provided in callback, and no fallback configured',
    });
  });
  test('only /no_sni/: clients that send a name are refused with unrecognized_name', () => {
    const h = load('/no_sni/ nosni.crt nosni.key\n');
    assert.equal(pick(h, undefined), 'nosni.crt');
    assert.deepEqual(selectHost(h, 'example.org'), {
      alert: 'unrecognized_name',
      reason: 'no pg_hosts.conf entry for server name "example.org"',
    });
  });
});
