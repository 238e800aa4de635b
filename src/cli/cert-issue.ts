/**
 * `pgtls cert ca | intermediate | server | client`: the root → intermediate → leaf recipes of PostgreSQL's
 * "Creating Certificates" section, each one command, with keys written 0600 and every output all-or-nothing.
 */
import { X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import { CaDatabase } from '../pki/ca-database.js';
import { KEY_MODE, type OutputFile, PUBLIC_MODE, siblingPath, writeOutputs } from '../pki/files.js';
import {
  type Issued,
  createClientCert,
  createIntermediateCA,
  createRootCA,
  createServerCert,
} from '../pki/generate.js';
import { exportPrivateKey, issuerChain, loadSigningCA } from '../pki/keys.js';
import {
  OUTPUT_OPTIONS,
  SIGNER_OPTIONS,
  SUBJECT_OPTIONS,
  dateOption,
  intOption,
  keyTypeOf,
  passphraseOption,
  pemText,
  print,
  printJson,
  required,
  subjectOf,
  usage,
} from './cert-common.js';
import { EXIT, type ParsedArgs, flag, parseCommandArgs, str, strs } from './command.js';

const COMMON_HELP = `  --cn NAME             subject common name
  --subject DN          full subject, OpenSSL style: "/C=US/O=Example/CN=name"
  --key-type TYPE       ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096
  --days N              validity in days
  --not-before DATE     start of validity (default: one minute ago)
  --out FILE            certificate file
  --key-out FILE        private key file (default: the --out name with .key), written 0600
  --passout SPEC        encrypt the key: pass:TEXT, env:VAR or file:PATH
  --force               replace existing output files
  --json                print what was written as JSON`;

const SIGNER_HELP = `  --ca FILE             the signing CA's certificate (its issuers may follow it in the file)
  --ca-key FILE         the signing CA's key (default: the --ca name with .key)
  --passin SPEC         passphrase of an encrypted CA key: pass:TEXT, env:VAR or file:PATH`;

export const CA_HELP = `Usage: pgtls cert ca [options]

Create a self-signed root CA (CA:TRUE, keyCertSign + cRLSign, 10 years) and its CA database (root.db.json).

Options:
${COMMON_HELP}
  --pathlen N           limit how many intermediate CAs may follow (default: none)

Defaults: --out root.crt --key-out root.key --cn "pgtls Root CA".`;

export const INTERMEDIATE_HELP = `Usage: pgtls cert intermediate --ca root.crt [options]

Create an intermediate CA (CA:TRUE, pathlen 0, 5 years) signed by --ca. The output file holds the intermediate
followed by the signing CA's own intermediates (never the root), so it can sign leaves with a complete chain.

Options:
${SIGNER_HELP}
${COMMON_HELP}
  --pathlen N           intermediate CAs allowed below this one (default 0)

Defaults: --out intermediate.crt --cn "pgtls Intermediate CA".`;

export const SERVER_HELP = `Usage: pgtls cert server --ca CA.crt --host NAME [--host NAME…] [--ip ADDR…] [options]

Create a server certificate (serverAuth, SANs for every --host and --ip, 398 days) and write the chain file
PostgreSQL wants as ssl_cert_file: the leaf first, then the intermediates, no root.

Options:
${SIGNER_HELP}
  --host NAME           DNS name clients use in host= (repeatable); wildcards as *.example.com
  --ip ADDR             IP address clients use in host= (repeatable)
${COMMON_HELP}

Defaults: --out server.crt --key-out server.key, CN = the first --host.`;

export const CLIENT_HELP = `Usage: pgtls cert client --ca CA.crt --user NAME [options]

Create a client certificate (clientAuth) whose CN is the database user, for the "cert" method and
clientcert=verify-full. The certificate file holds the leaf and intermediates (libpq sends them from sslcert).

Options:
${SIGNER_HELP}
  --user NAME           the database user (the CN)
  --pk8 FILE            also write the key as DER PKCS#8 for pgjdbc (postgresql.pk8), encrypted with --passout
  --der FILE            also write the certificate alone as DER (for Java keystores)
${COMMON_HELP}

Defaults: --out NAME.crt --key-out NAME.key.`;

interface Written {
  readonly certificate: string;
  readonly key: string;
  readonly extra: string[];
  readonly subject: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly sha256: string;
}

function validity(args: ParsedArgs) {
  const days = intOption(args, 'days', 1, 36500);
  const notBefore = dateOption(args, 'not-before');
  return { ...(days === undefined ? {} : { days }), ...(notBefore === undefined ? {} : { notBefore }) };
}

async function keyFile(issued: Issued, path: string, args: ParsedArgs): Promise<OutputFile> {
  const passout = await passphraseOption(args, 'passout');
  const pem = exportPrivateKey(createPrivateKey(issued.keyPem), 'pkcs8', 'pem', passout) as string;
  return { path, data: pem, mode: KEY_MODE };
}

function report(args: ParsedArgs, what: string, w: Written, notes: string[] = []): number {
  if (flag(args, 'json')) {
    printJson({ ...w, notes });
    return EXIT.ok;
  }
  print([
    `${what}: ${w.subject}`,
    `  serial   ${w.serial}`,
    `  expires  ${w.notAfter}`,
    `  sha256   ${w.sha256}`,
    `  wrote    ${w.certificate} (certificate), ${w.key} (private key, 0600)${w.extra.length ? `, ${w.extra.join(', ')}` : ''}`,
    ...notes,
  ]);
  return EXIT.ok;
}

function written(issued: Issued, certificate: string, key: string, extra: string[] = []): Written {
  return {
    certificate,
    key,
    extra,
    subject: issued.cert.subject,
    serial: issued.serial,
    notAfter: issued.cert.notAfter.toISOString(),
    sha256: new NodeX509(Buffer.from(issued.cert.rawData)).fingerprint256,
  };
}

export async function caCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ...OUTPUT_OPTIONS,
      ...SUBJECT_OPTIONS,
      pathlen: { type: 'string' },
    },
    CA_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const out = str(args, 'out') ?? 'root.crt';
  const keyOut = str(args, 'key-out') ?? siblingPath(out, '.key');
  const pathLength = intOption(args, 'pathlen', 0, 100);
  await passphraseOption(args, 'passout'); // fail on a bad spec before spending time on key generation
  const ca = await createRootCA({
    subject: subjectOf(args, 'pgtls Root CA'),
    keyType: keyTypeOf(args),
    ...validity(args),
    ...(pathLength === undefined ? {} : { pathLength }),
  });
  const db = await CaDatabase.fresh(out, ca.cert);
  await writeOutputs(
    [
      { path: out, data: pemText(ca.certPem), mode: PUBLIC_MODE },
      await keyFile(ca, keyOut, args),
      { path: db.path, data: db.serialize(), mode: PUBLIC_MODE },
    ],
    { force: flag(args, 'force') },
  );
  return report(args, 'root CA', written(ca, out, keyOut, [db.path]), [
    `  clients: sslrootcert=${out}   server: ssl_ca_file = '${out}' (to trust client certificates)`,
  ]);
}

async function signer(args: ParsedArgs) {
  const caFile = required(args, 'ca', 'the signing CA certificate');
  const caKey = str(args, 'ca-key') ?? siblingPath(caFile, '.key');
  const ca = await loadSigningCA(caFile, caKey, await passphraseOption(args, 'passin'));
  const db = await CaDatabase.open(caFile, ca.issued.cert);
  return { ca, db };
}

export async function intermediateCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ...OUTPUT_OPTIONS,
      ...SIGNER_OPTIONS,
      ...SUBJECT_OPTIONS,
      pathlen: { type: 'string' },
    },
    INTERMEDIATE_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const out = str(args, 'out') ?? 'intermediate.crt';
  const keyOut = str(args, 'key-out') ?? siblingPath(out, '.key');
  const { ca, db } = await signer(args);
  const pathLength = intOption(args, 'pathlen', 0, 100) ?? 0;
  const issued = await createIntermediateCA(ca.issued, {
    subject: subjectOf(args, 'pgtls Intermediate CA'),
    keyType: keyTypeOf(args),
    ...validity(args),
    pathLength,
  });
  db.recordIssued(issued.cert, 'intermediate');
  const own = await CaDatabase.fresh(out, issued.cert);
  const chain = issuerChain(ca).map((c) => c.toString('pem'));
  await writeOutputs(
    [
      { path: out, data: pemText(issued.certPem, ...chain), mode: PUBLIC_MODE },
      await keyFile(issued, keyOut, args),
      { path: db.path, data: db.serialize(), mode: PUBLIC_MODE },
      { path: own.path, data: own.serialize(), mode: PUBLIC_MODE },
    ].filter((f, i, all) => all.findIndex((g) => g.path === f.path) === i),
    { force: flag(args, 'force'), replace: [db.path] },
  );
  return report(args, 'intermediate CA', written(issued, out, keyOut, [own.path]));
}

function checkHosts(hosts: string[], ips: string[]): void {
  for (const ip of ips) if (!isIP(ip)) throw usage(`--ip ${ip} is not an IPv4 or IPv6 address`);
  for (const h of hosts) {
    if (isIP(h)) continue; // an address given as --host still becomes an IP SAN (libpq compares those as addresses)
    if (
      !/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(h)
    ) {
      throw usage(`--host ${h} is not a DNS name`, 'libpq only matches a single leading "*." wildcard label.');
    }
  }
}

export async function serverCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ...OUTPUT_OPTIONS,
      ...SIGNER_OPTIONS,
      host: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
      ...SUBJECT_OPTIONS,
    },
    SERVER_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const hosts = strs(args, 'host');
  const ips = strs(args, 'ip');
  if (hosts.length + ips.length === 0) {
    throw usage(
      'give at least one --host or --ip',
      'verify-full clients check the name they connect to against these.',
    );
  }
  checkHosts(hosts, ips);
  const out = str(args, 'out') ?? 'server.crt';
  const keyOut = str(args, 'key-out') ?? siblingPath(out, '.key');
  const { ca, db } = await signer(args);
  const issued = await createServerCert(ca.issued, {
    subject: subjectOf(args, (hosts[0] ?? ips[0])!),
    keyType: keyTypeOf(args),
    ...validity(args),
    hosts: [...hosts, ...ips],
  });
  db.recordIssued(issued.cert, 'server');
  const chain = issuerChain(ca).map((c) => c.toString('pem'));
  await writeOutputs(
    [
      { path: out, data: pemText(issued.certPem, ...chain), mode: PUBLIC_MODE },
      await keyFile(issued, keyOut, args),
      { path: db.path, data: db.serialize(), mode: PUBLIC_MODE },
    ],
    { force: flag(args, 'force'), replace: [db.path] },
  );
  return report(args, 'server certificate', written(issued, out, keyOut), [
    `  chain    leaf + ${chain.length} intermediate(s), no root`,
    `  server:  ssl_cert_file = '${out}'  ssl_key_file = '${keyOut}'`,
  ]);
}

export async function clientCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ...OUTPUT_OPTIONS,
      ...SIGNER_OPTIONS,
      user: { type: 'string' },
      pk8: { type: 'string' },
      der: { type: 'string' },
      subject: { type: 'string' },
      'key-type': { type: 'string' },
      days: { type: 'string' },
      'not-before': { type: 'string' },
    },
    CLIENT_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const user = required(args, 'user', 'the database user the certificate logs in as');
  const out = str(args, 'out') ?? `${user}.crt`;
  const keyOut = str(args, 'key-out') ?? siblingPath(out, '.key');
  const { ca, db } = await signer(args);
  const subject = str(args, 'subject') === undefined ? { CN: user } : subjectOf(args, user);
  if (subject.CN !== user)
    throw usage(`--subject must have CN=${user}: the "cert" method compares the CN with the user`);
  const issued = await createClientCert(ca.issued, { subject, keyType: keyTypeOf(args), ...validity(args) });
  db.recordIssued(issued.cert, 'client');
  const chain = issuerChain(ca).map((c) => c.toString('pem'));
  const files: OutputFile[] = [
    { path: out, data: pemText(issued.certPem, ...chain), mode: PUBLIC_MODE },
    await keyFile(issued, keyOut, args),
    { path: db.path, data: db.serialize(), mode: PUBLIC_MODE },
  ];
  const extra: string[] = [];
  const pk8 = str(args, 'pk8');
  if (pk8 !== undefined) {
    const der = exportPrivateKey(
      createPrivateKey(issued.keyPem),
      'pkcs8',
      'der',
      await passphraseOption(args, 'passout'),
    );
    files.push({ path: pk8, data: der, mode: KEY_MODE });
    extra.push(`${pk8} (DER PKCS#8 key, 0600)`);
  }
  const derOut = str(args, 'der');
  if (derOut !== undefined) {
    files.push({ path: derOut, data: Buffer.from(issued.cert.rawData), mode: PUBLIC_MODE });
    extra.push(`${derOut} (DER certificate)`);
  }
  await writeOutputs(files, { force: flag(args, 'force'), replace: [db.path] });
  return report(args, 'client certificate', written(issued, out, keyOut, extra), [
    `  libpq:   sslcert=${out} sslkey=${keyOut}${pk8 ? `   pgjdbc: sslcert=${derOut ?? out} sslkey=${pk8}` : ''}`,
  ]);
}
