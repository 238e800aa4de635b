/** `pgtls cert inspect`, `pgtls cert verify` and `pgtls cert roots`: reading what is there and explaining it. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PgtlsError } from '../errors.js';
import { PUBLIC_MODE, writeOutputs } from '../pki/files.js';
import { verifyHostName } from '../pki/hostname.js';
import { type CertificateSummary, type Finding, inspectCertificates } from '../pki/inspect.js';
import { readCertificates, readCrls, readPrivateKey } from '../pki/pem.js';
import {
  AZURE_ROOTS,
  type StoreCertificate,
  findKnownRoots,
  nodeRoots,
  searchRoots,
  systemRoots,
} from '../pki/roots.js';
import { type HostCheck, type VerifyPurpose, verifyCertificate } from '../pki/verify.js';
import type { x509 } from '../pki/x509.js';
import { dateOption, passphraseOption, pemText, print, printJson, required, usage } from './cert-common.js';
import { EXIT, flag, parseCommandArgs, str, strs } from './command.js';

export const ERR_ROOTS_NOT_FOUND = 'PGTLS_ERR_PKI_ROOTS_NOT_FOUND';

export const INSPECT_HELP = `Usage: pgtls cert inspect FILE [--key KEY] [options]
       pgtls cert inspect --server HOST[:PORT] [options]

Show every certificate in FILE (PEM or DER), or the chain a PostgreSQL server presents (SSLRequest, then TLS):
subject, issuer, serial, validity and days left, SANs, key, CA flag and pathlen, key usages, SHA-256 fingerprint —
and how they link: which signs which, a missing link, the wrong order, a key that does not match, expiry.

Options:
  --key FILE            check that this private key belongs to the first certificate
  --passin SPEC         passphrase of an encrypted --key
  --bundle              FILE is a trust bundle (ssl_ca_file / sslrootcert): order does not matter
  --server HOST[:PORT]  inspect a server's presented chain (port 5432 by default)
  --servername NAME     SNI to send (default: HOST when it is a name)
  --at DATE             evaluate validity at DATE instead of now
  --json                print the inspection as JSON

Exit status: 0 when nothing is wrong, 1 when a finding is an error (expired, broken chain, key mismatch).`;

export const VERIFY_HELP = `Usage: pgtls cert verify --root FILE [options] CHAIN
       pgtls cert verify --root FILE --server HOST[:PORT] [options]

Validate CHAIN (leaf first, then intermediates, as a server sends it) against the roots, the way OpenSSL does for
libpq and PostgreSQL: trusted roots are tried first, cross-signed intermediates give alternate paths, and a failure
is reported with OpenSSL's reason and depth. With --host, the leaf must also match the host name by libpq's
verify-full rules.

Options:
  --root FILE           trusted roots (sslrootcert / ssl_ca_file); repeatable
  --untrusted FILE      more intermediates (not trusted by themselves); repeatable
  --crl FILE            CRLs (sslcrl / ssl_crl_file); repeatable
  --crl-dir DIR         a hashed CRL directory (sslcrldir / ssl_crl_dir)
  --crl-check MODE      all (default with CRLs: what PostgreSQL and libpq do), leaf, or none
  --host NAME           the host= a verify-full client uses
  --purpose P           server (default: a certificate a server presents), client (one a client presents), any
  --server HOST[:PORT]  verify the chain a PostgreSQL server presents instead of a file
  --at DATE             verify at DATE instead of now
  --json                print the result as JSON

Exit status: 0 when the chain verifies, 1 when it does not.`;

export const ROOTS_HELP = `Usage: pgtls cert roots azure [--out FILE] [options]
       pgtls cert roots --subject TEXT [--out FILE] [options]

Collect root certificates from the trust stores already on this machine (Node's built-in list and the system store
under /etc/ssl), offline. \`azure\` collects the three roots Azure Database for PostgreSQL asks verify-ca and
verify-full clients to deploy: DigiCert Global Root G2, Microsoft RSA Root Certificate Authority 2017 and DigiCert
Global Root CA — each accepted only with its known SHA-256 fingerprint.

Options:
  --subject TEXT        roots whose subject contains TEXT (case-insensitive)
  --source S            node, system or both (default both)
  --out FILE            write the bundle (PEM) for sslrootcert
  --force               replace an existing --out file
  --json                print what was found as JSON

Exit status: 0 when every wanted root was found, 1 otherwise (the bundle then holds those found).`;

async function presented(spec: string, servername: string | undefined): Promise<x509.X509Certificate[]> {
  // Loaded only here so that `pgtls cert` never loads TLS otherwise.
  const { fetchServerChain } = await import('./cert-server-chain.js');
  const r = await fetchServerChain(spec, servername === undefined ? {} : { servername });
  if (!r.asSent) {
    process.stderr.write("note: the chain could not be read as sent; its order is Node's re-linked order\n");
  }
  return r.certificates;
}

function formatSummary(s: CertificateSummary): string[] {
  const sans = [
    ...s.sans.dns.map((d) => `DNS:${d}`),
    ...s.sans.ip.map((i) => `IP:${i}`),
    ...s.sans.email.map((e) => `email:${e}`),
  ];
  const key = `${s.key.type}${s.key.bits ? ` ${s.key.bits}` : ''}${s.key.curve ? ` (${s.key.curve})` : ''}`;
  const left =
    s.status === 'expired'
      ? `EXPIRED ${-s.daysLeft} days ago`
      : s.status === 'not-yet-valid'
        ? 'NOT YET VALID'
        : `${s.daysLeft} days left`;
  return [
    `#${s.index + 1} ${s.subject}`,
    `   issuer      ${s.issuer}${s.signedBy !== null ? `  (signed by #${s.signedBy + 1})` : s.selfSigned ? '  (self-signed)' : ''}`,
    `   serial      ${s.serial}`,
    `   validity    ${s.notBefore} → ${s.notAfter}  (${left})`,
    ...(sans.length ? [`   SANs        ${sans.join(', ')}`] : []),
    `   key         ${key}`,
    `   CA          ${s.ca ? `yes${s.pathLength !== null ? `, pathlen ${s.pathLength}` : ''}` : 'no'}`,
    ...(s.keyUsage.length ? [`   key usage   ${s.keyUsage.join(', ')}`] : []),
    ...(s.extendedKeyUsage.length ? [`   ext. usage  ${s.extendedKeyUsage.join(', ')}`] : []),
    `   SHA-256     ${s.sha256}`,
  ];
}

function formatFinding(f: Finding): string {
  return `${f.level}: ${f.message}`;
}

export async function inspectCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      key: { type: 'string' },
      passin: { type: 'string' },
      bundle: { type: 'boolean' },
      server: { type: 'string' },
      servername: { type: 'string' },
      at: { type: 'string' },
      json: { type: 'boolean' },
    },
    INSPECT_HELP,
  );
  if (!args) return EXIT.ok;
  const server = str(args, 'server');
  const file = args.positionals[0];
  if ((server === undefined) === (file === undefined) || args.positionals.length > 1) {
    throw usage('give one FILE or --server HOST[:PORT]');
  }
  const certs = server !== undefined ? await presented(server, str(args, 'servername')) : await readCertificates(file!);
  const keyFile = str(args, 'key');
  const key =
    keyFile === undefined ? undefined : (await readPrivateKey(keyFile, await passphraseOption(args, 'passin'))).key;
  const at = dateOption(args, 'at');
  const result = await inspectCertificates(certs, {
    mode: flag(args, 'bundle') ? 'bundle' : 'chain',
    ...(key ? { key } : {}),
    ...(at ? { now: at } : {}),
  });
  const failed = result.findings.some((f) => f.level === 'error');
  if (flag(args, 'json')) printJson({ source: server ?? file, ...result, ok: !failed });
  else {
    print([
      `${server !== undefined ? `${server} presents` : file} ${certs.length} certificate${certs.length === 1 ? '' : 's'}:`,
      ...result.certificates.flatMap(formatSummary),
      ...(result.findings.length ? result.findings.map(formatFinding) : ['no problems found']),
    ]);
  }
  return failed ? EXIT.failure : EXIT.ok;
}

/** libpq's host-name rules, from the client's matcher. */
const libpqHostCheck: HostCheck = (leaf, host) => {
  const r = verifyHostName(new Uint8Array(leaf.rawData), host);
  return r.ok ? undefined : r.message;
};

async function crlDirectory(dir: string): Promise<x509.X509Crl[]> {
  const names = (await readdir(dir).catch((cause) => {
    throw new PgtlsError(
      'PGTLS_ERR_PKI_READ',
      `${dir}: cannot read the CRL directory (${(cause as NodeJS.ErrnoException).code})`,
      {
        cause,
        details: { file: dir },
      },
    );
  })) as string[];
  const out: x509.X509Crl[] = [];
  for (const n of names.filter((n) => /^[0-9a-f]{8}\.r\d+$/.test(n)).slice(0, 10_000))
    out.push(...(await readCrls(join(dir, n))));
  return out;
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      root: { type: 'string', multiple: true },
      untrusted: { type: 'string', multiple: true },
      crl: { type: 'string', multiple: true },
      'crl-dir': { type: 'string' },
      'crl-check': { type: 'string' },
      host: { type: 'string' },
      purpose: { type: 'string' },
      server: { type: 'string' },
      servername: { type: 'string' },
      at: { type: 'string' },
      json: { type: 'boolean' },
    },
    VERIFY_HELP,
  );
  if (!args) return EXIT.ok;
  const rootsFiles = strs(args, 'root');
  if (rootsFiles.length === 0) throw usage('--root is required (the trusted roots, as in sslrootcert)');
  const server = str(args, 'server');
  const file = args.positionals[0];
  if ((server === undefined) === (file === undefined) || args.positionals.length > 1)
    throw usage('give one CHAIN file or --server HOST[:PORT]');
  const purposeArg = str(args, 'purpose') ?? 'server';
  const purposes: Record<string, VerifyPurpose> = { server: 'sslserver', client: 'sslclient', any: 'any' };
  const purpose = purposes[purposeArg];
  if (!purpose) throw usage(`--purpose ${purposeArg}: use server, client or any`);
  const crlCheck = str(args, 'crl-check');
  if (crlCheck !== undefined && !['all', 'leaf', 'none'].includes(crlCheck))
    throw usage(`--crl-check ${crlCheck}: use all, leaf or none`);
  const chain = server !== undefined ? await presented(server, str(args, 'servername')) : await readCertificates(file!);
  const roots = (await Promise.all(rootsFiles.map(readCertificates))).flat();
  const untrusted = (await Promise.all(strs(args, 'untrusted').map(readCertificates))).flat();
  const crls = (await Promise.all(strs(args, 'crl').map(readCrls))).flat();
  const dir = str(args, 'crl-dir');
  if (dir !== undefined) crls.push(...(await crlDirectory(dir)));
  const host = str(args, 'host');
  const at = dateOption(args, 'at');
  const result = await verifyCertificate(chain[0]!, {
    roots,
    untrusted: [...chain.slice(1), ...untrusted],
    crls,
    ...(crlCheck ? { crlCheck: crlCheck as 'all' | 'leaf' | 'none' } : {}),
    purpose,
    ...(host !== undefined ? { host, checkHost: libpqHostCheck } : {}),
    ...(at ? { at } : {}),
  });
  const path = result.path.map((c, i) => ({ depth: i, subject: c.subject, trusted: result.trusted[i] ?? false }));
  const alternative = result.alternative?.path.map((c, i) => ({
    depth: i,
    subject: c.subject,
    trusted: result.alternative?.trusted[i] ?? false,
  }));
  if (flag(args, 'json'))
    printJson({
      ok: result.ok,
      error: result.error ?? null,
      path,
      pathsTried: result.pathsTried,
      alternative: alternative ?? null,
    });
  else {
    const lines = path.map((p) => `  ${p.depth}: ${p.subject}${p.trusted ? '  [trusted root store]' : ''}`);
    if (result.ok) {
      print([
        `OK${host !== undefined ? ` for host ${host}` : ''}: ${server ?? file}`,
        ...lines,
        ...(result.pathsTried > 1
          ? [`  (${result.pathsTried} candidate paths exist; this is the one OpenSSL builds)`]
          : []),
      ]);
    } else {
      const e = result.error!;
      print([
        e.code === 'X509_V_ERR_HOSTNAME_MISMATCH'
          ? `error: ${e.reason}`
          : `error ${e.code} at depth ${e.depth} (${e.subject}): ${e.reason}`,
        ...(e.detail ? [`  ${e.detail}`] : []),
        'path:',
        ...lines,
        ...(alternative
          ? [
              'note: another path would validate; OpenSSL (libpq, PostgreSQL) does not try it once its own path reaches a trusted root:',
              ...alternative.map((p) => `  ${p.depth}: ${p.subject}${p.trusted ? '  [trusted root store]' : ''}`),
            ]
          : []),
      ]);
    }
  }
  return result.ok ? EXIT.ok : EXIT.failure;
}

export async function rootsCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      subject: { type: 'string' },
      source: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    ROOTS_HELP,
  );
  if (!args) return EXIT.ok;
  const which = args.positionals[0];
  const subject = str(args, 'subject');
  if (
    (which === undefined) === (subject === undefined) ||
    (which !== undefined && which !== 'azure') ||
    args.positionals.length > 1
  ) {
    throw usage('give `azure` or --subject TEXT');
  }
  const source = str(args, 'source') ?? 'both';
  if (!['node', 'system', 'both'].includes(source)) throw usage(`--source ${source}: use node, system or both`);
  const store: StoreCertificate[] = [
    ...(source !== 'system' ? nodeRoots() : []),
    ...(source !== 'node' ? await systemRoots() : []),
  ];
  let found: { name: string; cert?: x509.X509Certificate; foundIn: string[] }[];
  if (which === 'azure') {
    found = findKnownRoots(AZURE_ROOTS, store).map((r) => ({
      name: r.root.name,
      ...(r.cert ? { cert: r.cert } : {}),
      foundIn: r.foundIn,
    }));
  } else {
    found = searchRoots(store, subject!).map((r) => ({ name: r.cert.subject, cert: r.cert, foundIn: r.foundIn }));
  }
  const present = found.filter((f) => f.cert);
  const out = str(args, 'out');
  if (out !== undefined && present.length > 0) {
    await writeOutputs(
      [{ path: out, data: pemText(...present.map((f) => f.cert!.toString('pem'))), mode: PUBLIC_MODE }],
      {
        force: flag(args, 'force'),
      },
    );
  }
  const allFound = present.length === found.length && found.length > 0;
  if (flag(args, 'json')) {
    printJson({
      roots: found.map((f) => ({
        name: f.name,
        found: Boolean(f.cert),
        foundIn: f.foundIn,
        subject: f.cert?.subject ?? null,
        notAfter: f.cert?.notAfter.toISOString() ?? null,
      })),
      out: present.length > 0 ? (out ?? null) : null,
    });
  } else {
    print([
      ...found.map((f) =>
        f.cert
          ? `found      ${f.name}  (in ${f.foundIn.join(' and ')} store; expires ${f.cert.notAfter.toISOString().slice(0, 10)})`
          : `NOT FOUND  ${f.name}`,
      ),
      ...(found.length === 0 ? [`no root certificate matches "${subject}"`] : []),
      ...(out !== undefined && present.length > 0
        ? [`wrote ${out} (${present.length} certificates): use it as sslrootcert`]
        : []),
    ]);
  }
  if (!allFound && out !== undefined && present.length === 0) {
    throw new PgtlsError(
      ERR_ROOTS_NOT_FOUND,
      `no wanted root was found in the ${source} store(s); nothing was written`,
      {
        details: { hint: 'Install the distribution package ca-certificates, or try --source node.' },
      },
    );
  }
  return allFound ? EXIT.ok : EXIT.failure;
}
