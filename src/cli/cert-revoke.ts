/** `pgtls cert revoke` and `pgtls cert crl`: the CA database's revocations, published as CRL file and CRL directory. */
import { mkdir } from 'node:fs/promises';
import { CaDatabase, REVOCATION_REASONS, type RevocationReason, normaliseSerial } from '../pki/ca-database.js';
import { crlHash, issueCrl, writeCrlDirectory } from '../pki/crl.js';
import { likelyIssued } from '../pki/facts.js';
import { PUBLIC_MODE, siblingPath, writeOutputs } from '../pki/files.js';
import { loadSigningCA } from '../pki/keys.js';
import { readCertificates } from '../pki/pem.js';
import { x509 } from '../pki/x509.js';
import { intOption, passphraseOption, pemText, print, printJson, required, usage } from './cert-common.js';
import { EXIT, flag, parseCommandArgs, str, strs } from './command.js';

export const REVOKE_HELP = `Usage: pgtls cert revoke --ca CA.crt (--cert FILE | --serial HEX) [options]

Record a revocation in the CA's database (CA.db.json next to CA.crt). Publish it with \`pgtls cert crl\`.

Options:
  --ca FILE             the CA that issued the certificate
  --cert FILE           the certificate to revoke
  --serial HEX          or its serial number (as \`pgtls cert inspect\` prints it)
  --reason REASON       ${REVOCATION_REASONS.join(', ')} (default: unspecified)
  --force               revoke a serial this database did not record (issued before pgtls kept it)
  --json                print the revocation as JSON`;

export const CRL_HELP = `Usage: pgtls cert crl --ca CA.crt [--ca CA2.crt …] (--out FILE | --dir DIR) [options]

Issue a CRL for each CA from its database, signed by its key. Give every CA of your chains: PostgreSQL and libpq
check revocation for every certificate of the chain (X509_V_FLAG_CRL_CHECK_ALL), so each issuing CA needs a CRL.

Options:
  --ca FILE             a CA certificate (repeatable); its key is FILE with .key unless --ca-key
  --ca-key FILE         the key of each --ca, in the same order (repeatable)
  --passin SPEC         passphrase of encrypted CA keys: pass:TEXT, env:VAR or file:PATH
  --days N              next update in N days (default 30); the CRL is refused as expired after that
  --out FILE            all CRLs in one PEM file, for ssl_crl_file / sslcrl
  --dir DIR             a hashed directory (<hash>.r0 files), for ssl_crl_dir / sslcrldir; created if missing,
                        a CA's previous CRL there is replaced
  --force               replace an existing --out file
  --json                print what was written as JSON`;

export async function revokeCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ca: { type: 'string' },
      cert: { type: 'string' },
      serial: { type: 'string' },
      reason: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    REVOKE_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const caFile = required(args, 'ca', 'the CA that issued the certificate');
  const reason = (str(args, 'reason') ?? 'unspecified') as RevocationReason;
  if (!REVOCATION_REASONS.includes(reason)) {
    throw usage(`--reason ${reason} is not a CRL reason`, `Use one of: ${REVOCATION_REASONS.join(', ')}.`);
  }
  const certFile = str(args, 'cert');
  const serialArg = str(args, 'serial');
  if ((certFile === undefined) === (serialArg === undefined)) throw usage('give exactly one of --cert and --serial');
  const [ca] = await readCertificates(caFile);
  let serial: string;
  if (certFile !== undefined) {
    const [cert] = await readCertificates(certFile);
    if (!likelyIssued(ca!, cert!)) {
      throw usage(
        `${certFile} was issued by ${cert!.issuer}, not by ${ca!.subject} (${caFile})`,
        'Give the CA that signed it.',
      );
    }
    serial = normaliseSerial(cert!.serialNumber);
  } else serial = normaliseSerial(serialArg!);
  const db = await CaDatabase.open(caFile, ca!);
  const rec = db.revoke(serial, reason, { allowUnknown: flag(args, 'force') });
  await db.save();
  if (flag(args, 'json')) printJson({ ...rec, database: db.path });
  else {
    print([
      `revoked serial ${rec.serial} (${rec.reason}) in ${db.path}`,
      `next: pgtls cert crl --ca ${caFile} --out crl.pem   (then reload the server)`,
    ]);
  }
  return EXIT.ok;
}

export async function crlCommand(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    argv,
    {
      ca: { type: 'string', multiple: true },
      'ca-key': { type: 'string', multiple: true },
      passin: { type: 'string' },
      days: { type: 'string' },
      out: { type: 'string' },
      dir: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    CRL_HELP,
  );
  if (!args) return EXIT.ok;
  if (args.positionals.length) throw usage(`unexpected argument "${args.positionals[0]}"`);
  const cas = strs(args, 'ca');
  if (cas.length === 0) throw usage('--ca is required (the CA whose revocations to publish)');
  const keys = strs(args, 'ca-key');
  if (keys.length > 0 && keys.length !== cas.length) throw usage('give one --ca-key per --ca, in the same order');
  const out = str(args, 'out');
  const dir = str(args, 'dir');
  if (out === undefined && dir === undefined) throw usage('give --out FILE, --dir DIR or both');
  const days = intOption(args, 'days', 1, 3650) ?? 30;
  const passin = await passphraseOption(args, 'passin');
  const crls: { ca: string; pem: string; revoked: number; hash: string; nextUpdate: string }[] = [];
  const dbs: CaDatabase[] = [];
  for (let i = 0; i < cas.length; i++) {
    const caFile = cas[i]!;
    const signer = await loadSigningCA(caFile, keys[i] ?? siblingPath(caFile, '.key'), passin);
    const db = await CaDatabase.open(caFile, signer.issued.cert);
    const pem = await issueCrl(signer.issued, db, { days });
    const crl = new x509.X509Crl(pem);
    dbs.push(db);
    crls.push({
      ca: caFile,
      pem,
      revoked: db.data.revoked.length,
      hash: crlHash(crl),
      nextUpdate: crl.nextUpdate?.toISOString() ?? '',
    });
  }
  if (out !== undefined) {
    await writeOutputs([{ path: out, data: pemText(...crls.map((c) => c.pem)), mode: PUBLIC_MODE }], {
      force: flag(args, 'force'),
    });
  }
  let dirFiles: string[] = [];
  if (dir !== undefined) {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    dirFiles = await writeCrlDirectory(
      dir,
      crls.map((c) => c.pem),
    );
  }
  for (const db of dbs) await db.save(); // the CRL number moves on only once the CRL is out
  const summary = crls.map(({ pem: _pem, ...rest }) => rest);
  if (flag(args, 'json')) printJson({ crls: summary, out: out ?? null, dir: dir ?? null, files: dirFiles });
  else {
    print([
      ...crls.map((c) => `CRL of ${c.ca}: ${c.revoked} revoked, next update ${c.nextUpdate}, hash ${c.hash}`),
      ...(out !== undefined ? [`wrote ${out}   server: ssl_crl_file = '${out}'   libpq: sslcrl=${out}`] : []),
      ...(dir !== undefined
        ? [`wrote ${dirFiles.join(', ')}   server: ssl_crl_dir = '${dir}'   libpq: sslcrldir=${dir}`]
        : []),
    ]);
  }
  return EXIT.ok;
}
