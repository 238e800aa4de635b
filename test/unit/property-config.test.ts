/**
 * Property-based tests of the text parsers a DBA feeds the gateway: the pg_hba.conf/pg_ident.conf tokenizer and
 * line parsers (src/hba), the postgresql.conf reader (src/config/conf-file.ts) and PEM handling (src/pki/pem.ts).
 * Random text never makes them throw anything but a coded PgtlsError; quoting round-trips.
 * Sizes: PGTLS_PROPERTY_SCALE (test/support/property.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { ERR_CONFIG_SYNTAX, parseConfText } from '../../src/config/conf-file.js';
import { parseHba } from '../../src/hba/hba.js';
import { readIdentFile } from '../../src/hba/ident.js';
import { ERR_HBA, tokenizeAuthText } from '../../src/hba/tokenize.js';
import {
  ERR_KEY_PASSPHRASE,
  ERR_NOT_CERTIFICATE,
  ERR_NOT_KEY,
  encodePem,
  parseCertificates,
  parsePrivateKey,
  splitPem,
} from '../../src/pki/pem.js';
import { onlyCodedErrors, runs } from '../support/property.js';

const dir = mkdtempSync(join(tmpdir(), 'pgtls-prop-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// `@file` tokens resolve relative to the including file: point it at an empty directory so fuzz input reads nothing.
const HBA = join(dir, 'pg_hba.conf');

/** Words an hba or ident line is made of, plus the characters the tokenizer treats specially. */
const hbaWord = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'local',
      'host',
      'hostssl',
      'hostnossl',
      'hostgssenc',
      'include',
      'include_dir',
      'all',
      'sameuser',
      'samerole',
      'replication',
      '+admins',
      '/^a.*$',
      '/(',
      '/[[:alpha:]]+',
      '/(?i)x',
      '"all"',
      '127.0.0.1/32',
      '::1/128',
      '0.0.0.0/0',
      '10.0.0.1',
      '255.255.255.0',
      'samehost',
      'samenet',
      'trust',
      'reject',
      'md5',
      'scram-sha-256',
      'password',
      'cert',
      'ident',
      'peer',
      'ldap',
      'radius',
      'gss',
      'oauth',
      'clientcert=verify-full',
      'clientcert=verify-ca',
      'clientcert=no-verify',
      'clientname=DN',
      'map=m',
      'ldapserver=x',
      'radiusservers=a',
      'radiussecrets=b',
      'scope=s',
      'issuer=i',
      'x=',
      '=',
      ',',
      ', ',
      '"',
      '""',
      '#',
      '\\',
      '@',
      '@missing',
      '\t',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
);
const hbaText = fc
  .array(
    fc.array(hbaWord, { maxLength: 9 }).map((w) => w.join(' ')),
    { maxLength: 4 },
  )
  .map((lines) => lines.join('\n'));

test('pg_hba.conf: random lines tokenize and parse to rules or a coded PGTLS_ERR_HBA, nothing else', () => {
  fc.assert(
    fc.property(hbaText, (text) => {
      onlyCodedErrors(() => parseHba(tokenizeAuthText(text, HBA)), [ERR_HBA]);
    }),
    { numRuns: runs(80_000) },
  );
});

test('pg_hba.conf tokenizer: random text never throws anything but PGTLS_ERR_HBA', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (text) => {
      onlyCodedErrors(() => tokenizeAuthText(text, HBA), [ERR_HBA]);
    }),
    { numRuns: runs(60_000) },
  );
});

test('pg_hba.conf tokenizer: a double-quoted token comes back as written, quoted, one per field', () => {
  const tokenText = fc.string({ unit: 'binary', maxLength: 16 }).filter((s) => !/[\r\n]/.test(s));
  fc.assert(
    fc.property(fc.array(tokenText, { minLength: 1, maxLength: 6 }), (texts) => {
      const line = texts.map((t) => `"${t.replace(/"/g, '""')}"`).join(' \t');
      const out = tokenizeAuthText(line, HBA);
      assert.equal(out.length, 1);
      assert.deepEqual(
        out[0]!.fields,
        texts.map((t) => [{ text: t, quoted: true }]),
      );
    }),
    { numRuns: runs(40_000) },
  );
});

test('pg_ident.conf: random files parse to map lines or a coded PGTLS_ERR_HBA, nothing else', () => {
  const file = join(dir, 'pg_ident.conf');
  fc.assert(
    fc.property(hbaText, (text) => {
      writeFileSync(file, text);
      const r = onlyCodedErrors(() => readIdentFile(file), [ERR_HBA]);
      if (Array.isArray(r)) for (const l of r) assert.equal(typeof l.map, 'string');
    }),
    { numRuns: runs(10_000) },
  );
});

const confLine = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc
    .array(
      fc.constantFrom(
        'ssl',
        'port',
        ' ',
        '=',
        "'",
        "''",
        '\\',
        '\\n',
        '\\047',
        '#',
        'on',
        '5432',
        '60s',
        '-',
        '.',
        '$',
      ),
      { maxLength: 8 },
    )
    .map((w) => w.join('')),
);

test('postgresql.conf: random text parses to entries or a coded PGTLS_ERR_CONFIG_SYNTAX, nothing else', () => {
  fc.assert(
    fc.property(fc.array(confLine, { maxLength: 4 }), (lines) => {
      onlyCodedErrors(() => parseConfText(lines.join('\n'), '/x/pgtls.conf'), [ERR_CONFIG_SYNTAX]);
    }),
    { numRuns: runs(100_000) },
  );
});

/** Quote a value as postgresql.conf allows: '' for a quote, backslash escapes for backslash and line ends. */
const quoteConf = (v: string) =>
  `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;

test('postgresql.conf: name = quoted value gives back the name (lower-cased) and the exact value', () => {
  const name = fc
    .stringMatching(/^[A-Za-z_][A-Za-z0-9_.$]{0,15}$/)
    .filter((n) => !n.toLowerCase().startsWith('include'));
  fc.assert(
    fc.property(
      fc.array(fc.tuple(name, fc.string({ unit: 'binary', maxLength: 30 }), fc.boolean()), { maxLength: 5 }),
      (pairs) => {
        const text = pairs.map(([n, v, eq]) => `${n}${eq ? ' = ' : ' '}${quoteConf(v)}  # c`).join('\n');
        const out = parseConfText(text, '/x/pgtls.conf');
        assert.deepEqual(
          out.map((e) => [e.name, e.value, e.line]),
          pairs.map(([n, v], i) => [n.toLowerCase(), v, i + 1]),
        );
      },
    ),
    { numRuns: runs(60_000) },
  );
});

test('PEM: encode → split gives back label and DER bytes', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.stringMatching(/^[A-Z0-9][A-Z0-9 ]{0,20}[A-Z0-9]$/),
      fc.string({ maxLength: 20 }).filter((s) => !s.includes('-----')),
      (der, label, noise) => {
        const blocks = splitPem(`${noise}\n${encodePem(der, label)}${noise}`);
        assert.equal(blocks.length, 1);
        assert.equal(blocks[0]!.label, label);
        assert.deepEqual(blocks[0]!.der, Buffer.from(der));
      },
    ),
    { numRuns: runs(40_000) },
  );
});

const pemish = fc.oneof(
  fc.uint8Array({ maxLength: 120 }),
  fc
    .array(
      fc.constantFrom(
        '-----BEGIN CERTIFICATE-----\n',
        '-----END CERTIFICATE-----\n',
        '-----BEGIN PRIVATE KEY-----\n',
        '-----END PRIVATE KEY-----\n',
        '-----BEGIN ENCRYPTED PRIVATE KEY-----\n',
        '-----END ENCRYPTED PRIVATE KEY-----\n',
        '-----BEGIN RSA PRIVATE KEY-----\n',
        '-----END RSA PRIVATE KEY-----\n',
        'Proc-Type: 4,ENCRYPTED\n',
        'MIIB',
        'AAAA\n',
        '====\n',
        '\r\n',
      ),
      { maxLength: 6 },
    )
    .map((parts) => Buffer.from(parts.join(''))),
  fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.concat([Buffer.from([0x30, 0x82]), b])),
);

test('PEM/DER certificates: random input gives certificates or PGTLS_ERR_PKI_NOT_CERTIFICATE, nothing else', () => {
  fc.assert(
    fc.property(pemish, (bytes) => {
      onlyCodedErrors(() => parseCertificates(bytes, 'fuzz.crt'), [ERR_NOT_CERTIFICATE]);
    }),
    { numRuns: runs(10_000) },
  );
});

test('PEM/DER keys: random input gives a key or a coded not-a-key / passphrase error, nothing else', () => {
  fc.assert(
    fc.property(pemish, fc.option(fc.string({ maxLength: 8 }), { nil: undefined }), (bytes, pass) => {
      onlyCodedErrors(() => parsePrivateKey(bytes, 'fuzz.key', pass), [ERR_NOT_KEY, ERR_KEY_PASSPHRASE]);
    }),
    { numRuns: runs(10_000) },
  );
});
