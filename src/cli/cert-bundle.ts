import { PgtlsError } from '../errors.js';
/** `pgtls cert bundle` (chain files and CA bundles from loose files) and `pgtls cert convert` (DER ↔ PEM, key forms). */
import { facts, isCA } from '../pki/facts.js';
import { KEY_MODE, PUBLIC_MODE, writeOutputs } from '../pki/files.js';
import { linkSigners } from '../pki/inspect.js';
import { type KeyOutputFormat, exportPrivateKey } from '../pki/keys.js';
import {
  classifyDer,
  detectEncoding,
  encodePem,
  parseCertificates,
  parseCrls,
  parsePrivateKey,
  readCertificates,
  readInput,
  splitPem,
} from '../pki/pem.js';
import type { x509 } from '../pki/x509.js';
import { passphraseOption, pemText, print, printJson, required, usage } from './cert-common.js';
import { EXIT, flag, parseCommandArgs, str } from './command.js';

export const ERR_CHAIN_BROKEN = 'PGTLS_ERR_PKI_CHAIN_BROKEN';

export const BUNDLE_HELP = `Usage: pgtls cert bundle --out FILE [--chain | --ca-bundle] FILE…

Build one PEM file from certificates spread over several files (PEM or DER, any order).

  --chain (default)     a chain file to present (ssl_cert_file, sslcert): leaf first, each certificate followed by
                        its issuer. Refused when the certificates do not form one chain. A self-signed root is
                        reported (peers must already have it) and left out with --drop-root.
  --ca-bundle           a trust file (ssl_ca_file, sslrootcert): CA certificates, roots first
  --drop-root           leave self-signed roots out of a chain file
  --out FILE            the bundle to write
  --force               replace an existing --out file
  --json                print the resulting order and notes as JSON

Duplicates are dropped in both modes.`;

export const CONVERT_HELP = `Usage: pgtls cert convert IN --out OUT [options]

Convert a certificate, CRL or private key between PEM and DER, and private keys between PKCS#8, PKCS#1 (RSA) and
SEC1 (EC). The input's format is detected from its content (Azure serves DER under .crt names).

Options:
  --to pem|der          output encoding (default: the other one)
  --key-format FORMAT   pkcs8 (default), pkcs1 or sec1, for keys
  --passin SPEC         passphrase of an encrypted input key: pass:TEXT, env:VAR or file:PATH
  --passout SPEC        encrypt the output key (PKCS#8 for DER, e.g. pgjdbc's postgresql.pk8)
  --out FILE            output file (keys are written 0600)
  --force               replace an existing --out file
  --json                print what was converted as JSON

Examples:
  pgtls cert convert DigiCertGlobalRootCA.crt --out DigiCertGlobalRootCA.pem     (openssl x509 -inform DER …)
  pgtls cert convert client.key --out postgresql.pk8                              (PKCS#8 DER for pgjdbc)`;

function broken(message: string, hint: string): PgtlsError {
  return new PgtlsError(ERR_CHAIN_BROKEN, message, { details: { hint } });
}

export async function bundleCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      out: { type: 'string' },
      chain: { type: 'boolean' },
      'ca-bundle': { type: 'boolean' },
      'drop-root': { type: 'boolean' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    BUNDLE_HELP,
  );
  if (!args) return EXIT.ok;
  const out = required(args, 'out', 'the bundle file to write');
  if (flag(args, 'chain') && flag(args, 'ca-bundle')) throw usage('give --chain or --ca-bundle, not both');
  if (args.positionals.length === 0) throw usage('give the certificate files to bundle');
  const notes: string[] = [];
  const all: { cert: x509.X509Certificate; file: string }[] = [];
  for (const file of args.positionals) for (const cert of await readCertificates(file)) all.push({ cert, file });
  const unique: typeof all = [];
  for (const e of all) {
    const dup = unique.find((u) => facts(u.cert).sha256 === facts(e.cert).sha256);
    if (dup) notes.push(`dropped a duplicate of ${e.cert.subject} (${e.file})`);
    else unique.push(e);
  }
  const certs = unique.map((u) => u.cert);
  const signers = await linkSigners(certs);
  const name = (i: number) => `${certs[i]!.subject} (${unique[i]!.file})`;
  let ordered: number[];
  if (flag(args, 'ca-bundle')) {
    certs.forEach((c, i) => {
      if (!isCA(c) && !facts(c).selfSigned)
        notes.push(`${name(i)} is not a CA certificate; a trust file normally holds CAs only`);
    });
    // Roots first, then what each signs, breadth-first: the order people read and the one c_rehash-style tools expect.
    const depth = (i: number): number => {
      let d = 0;
      for (let j = signers[i]!; j >= 0 && d < certs.length; j = signers[j]!) d++;
      return d;
    };
    ordered = certs.map((_, i) => i).sort((a, b) => depth(a) - depth(b));
    ordered.forEach((i) => {
      if (signers[i]! < 0 && !facts(certs[i]!).selfSigned)
        notes.push(`the issuer of ${name(i)} (${certs[i]!.issuer}) is not in the bundle`);
    });
  } else {
    const ends = certs.map((_, i) => i).filter((i) => !signers.includes(i));
    if (ends.length !== 1) {
      const loose = ends.find((i) => signers[i]! < 0 && !facts(certs[i]!).selfSigned) ?? ends[0] ?? 0;
      throw broken(
        `the certificates do not form one chain: ${ends.length} of them sign nothing else (${ends.map(name).join('; ')}); nothing given signed ${name(loose)}`,
        `Add the certificate of ${certs[loose]!.issuer}, or remove the unrelated ones.`,
      );
    }
    ordered = [];
    for (let i = ends[0]!; i >= 0 && !ordered.includes(i); i = signers[i]!) ordered.push(i);
    const left = certs.map((_, i) => i).filter((i) => !ordered.includes(i));
    if (left.length) {
      throw broken(
        `not part of the chain of ${name(ordered[0]!)}: ${left.map(name).join('; ')}`,
        'Remove them, or build a --ca-bundle instead.',
      );
    }
    const last = ordered[ordered.length - 1]!;
    if (facts(certs[last]!).selfSigned && ordered.length > 1) {
      if (flag(args, 'drop-root')) {
        ordered.pop();
        notes.push(`left out the root ${certs[last]!.subject}: clients must have it in sslrootcert`);
      } else {
        notes.push(
          `warning: the chain includes the root ${certs[last]!.subject}; PostgreSQL does not need it in ssl_cert_file (clients must have it anyway) — use --drop-root to leave it out`,
        );
      }
    } else if (!facts(certs[last]!).selfSigned) {
      notes.push(
        `the chain ends at ${certs[last]!.subject}; clients need its issuer ${certs[last]!.issuer} in sslrootcert`,
      );
    }
  }
  await writeOutputs(
    [{ path: out, data: pemText(...ordered.map((i) => certs[i]!.toString('pem'))), mode: PUBLIC_MODE }],
    {
      force: flag(args, 'force'),
    },
  );
  const order = ordered.map((i) => ({ subject: certs[i]!.subject, issuer: certs[i]!.issuer, from: unique[i]!.file }));
  if (flag(args, 'json')) printJson({ out, order, notes });
  else print([`wrote ${out}:`, ...order.map((o, k) => `  ${k + 1}. ${o.subject}  (issuer: ${o.issuer})`), ...notes]);
  return EXIT.ok;
}

export async function convertCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      out: { type: 'string' },
      to: { type: 'string' },
      'key-format': { type: 'string' },
      passin: { type: 'string' },
      passout: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    CONVERT_HELP,
  );
  if (!args) return EXIT.ok;
  const input = args.positionals[0];
  if (input === undefined || args.positionals.length > 1) throw usage('give exactly one input file');
  const out = required(args, 'out', 'the converted file');
  const to = str(args, 'to');
  if (to !== undefined && to !== 'pem' && to !== 'der') throw usage(`--to ${to}: use pem or der`);
  const keyFormat = str(args, 'key-format') ?? 'pkcs8';
  if (!['pkcs8', 'pkcs1', 'sec1'].includes(keyFormat))
    throw usage(`--key-format ${keyFormat}: use pkcs8, pkcs1 or sec1`);
  const bytes = await readInput(input);
  const encoding = detectEncoding(bytes);
  const target = (to ?? (encoding === 'pem' ? 'der' : 'pem')) as 'pem' | 'der';
  let kind: string;
  if (encoding === 'pem') {
    const labels = splitPem(bytes.toString('latin1')).map((b) => b.label);
    kind = labels.some((l) => l.includes('PRIVATE KEY'))
      ? 'private-key'
      : labels.some((l) => l.includes('CERTIFICATE'))
        ? 'certificate'
        : labels.includes('X509 CRL')
          ? 'crl'
          : 'unknown';
  } else if (encoding === 'der') {
    kind = classifyDer(bytes);
    if (kind === 'encrypted-private-key') kind = 'private-key';
  } else kind = 'unknown';

  let data: string | Buffer;
  let mode = PUBLIC_MODE;
  let described: string;
  if (kind === 'certificate' || kind === 'crl') {
    const items = kind === 'certificate' ? parseCertificates(bytes, input) : parseCrls(bytes, input);
    if (target === 'der' && items.length > 1) {
      throw usage(
        `${input} holds ${items.length} ${kind === 'crl' ? 'CRLs' : 'certificates'}; DER holds exactly one`,
        'Split the file, or keep PEM.',
      );
    }
    const label = kind === 'crl' ? 'X509 CRL' : 'CERTIFICATE';
    data =
      target === 'der'
        ? Buffer.from(items[0]!.rawData)
        : items.map((c) => encodePem(new Uint8Array(c.rawData), label)).join('');
    described = `${items.length} ${kind === 'crl' ? 'CRL' : 'certificate'}${items.length > 1 ? 's' : ''}`;
  } else if (kind === 'private-key') {
    const parsed = parsePrivateKey(bytes, input, await passphraseOption(args, 'passin'));
    data = exportPrivateKey(parsed.key, keyFormat as KeyOutputFormat, target, await passphraseOption(args, 'passout'));
    mode = KEY_MODE;
    described = `private key (${parsed.format} ${parsed.encoding} → ${keyFormat} ${target})`;
  } else {
    throw new PgtlsError(
      'PGTLS_ERR_PKI_UNKNOWN_FORMAT',
      `${input}: not a certificate, CRL or private key in PEM or DER`,
      {
        details: { file: input, hint: 'Check the file with `pgtls cert inspect`, or `file`/`head` it.' },
      },
    );
  }
  await writeOutputs([{ path: out, data, mode }], { force: flag(args, 'force') });
  if (flag(args, 'json')) printJson({ input, out, kind, from: encoding, to: target, described });
  else print(`wrote ${out}: ${described}, ${encoding} → ${target}${mode === KEY_MODE ? ' (0600)' : ''}`);
  return EXIT.ok;
}
