import { isPgtlsError } from '../errors.js';
/** `pgtls cert <subcommand>`: dispatch to the certificate recipes (one module per family of subcommands). */
import { usage } from './cert-common.js';
import { type Command, ERR_USAGE, EXIT } from './command.js';

const HELP = `Usage: pgtls cert <subcommand> [options]

Certificates for PostgreSQL, offline, as PostgreSQL's SSL chapter and Azure's TLS guide describe them.

Subcommands:
  ca             create a root CA (and its CA database)
  intermediate   create an intermediate CA signed by a CA
  server         create a server certificate + chain file for ssl_cert_file (leaf, intermediates, no root)
  client         create a client certificate for the "cert" method (CN = user), also PKCS#8 DER for pgjdbc
  revoke         record a revocation in a CA's database
  crl            issue CRLs: a file for ssl_crl_file, a hashed directory for ssl_crl_dir
  bundle         build a chain file or a CA bundle from loose certificate files
  convert        DER ↔ PEM; PKCS#8 ↔ PKCS#1/SEC1 keys
  inspect        show certificates (from a file or a server) and how they link
  verify         validate a chain as OpenSSL/libpq would, with the precise reason on failure
  roots          collect Azure's (or any) root certificates from the local trust stores

Run 'pgtls cert <subcommand> --help' for its options.`;

const SUBCOMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  ca: async () => (await import('./cert-issue.js')).caCommand,
  intermediate: async () => (await import('./cert-issue.js')).intermediateCommand,
  server: async () => (await import('./cert-issue.js')).serverCommand,
  client: async () => (await import('./cert-issue.js')).clientCommand,
  revoke: async () => (await import('./cert-revoke.js')).revokeCommand,
  crl: async () => (await import('./cert-revoke.js')).crlCommand,
  bundle: async () => (await import('./cert-bundle.js')).bundleCommand,
  convert: async () => (await import('./cert-bundle.js')).convertCommand,
  inspect: async () => (await import('./cert-inspect.js')).inspectCommand,
  verify: async () => (await import('./cert-inspect.js')).verifyCommand,
  roots: async () => (await import('./cert-inspect.js')).rootsCommand,
};

export const command: Command = async (argv) => {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${HELP}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  try {
    const load = SUBCOMMANDS[name];
    if (!load) throw usage(`unknown cert subcommand "${name}"`, "Run 'pgtls cert --help' for the list.");
    return await (await load())(rest);
  } catch (err) {
    // Usage errors exit 2 (EXIT.usage), as command.ts defines; main.ts turns every other error into exit 1.
    if (!isPgtlsError(err, ERR_USAGE)) throw err;
    process.stderr.write(`pgtls: ${err.message} [${err.code}]\n`);
    if (typeof err.details.hint === 'string') process.stderr.write(`hint: ${err.details.hint}\n`);
    return EXIT.usage;
  }
};
