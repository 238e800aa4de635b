/**
 * Server TLS from the ssl_* settings, loaded the way be_tls_init() in be-secure-openssl.c loads them, with its
 * messages: each file is read and checked on its own so an error names the file and the problem.
 * The result is an immutable TlsMaterial; the gateway keeps the current one in a TlsStore and swaps it on reload,
 * so a handshake always uses one consistent set and established sessions keep theirs.
 */
import { constants, type KeyObject, X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type SecureContext, type SecureContextOptions, createSecureContext } from 'node:tls';
import type { TlsVersionName } from '../config/schema.js';
import { PgtlsError } from '../errors.js';
import { checkServerKeyFile } from './key-file.js';
import { runPassphraseCommand } from './passphrase.js';

export const ERR_TLS_CONFIG = 'PGTLS_ERR_TLS_CONFIG';

/** OpenSSL's default TLS 1.3 suites: what PostgreSQL uses when ssl_tls13_ciphers is empty. */
const OPENSSL_DEFAULT_TLS13 = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256';
const VERSION_ORDER = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;

/**
 * An empty CRL from a throw-away CA whose key no longer exists. PostgreSQL turns on OpenSSL's CRL checking
 * (X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL) whenever ssl_crl_file or ssl_crl_dir is set — even if no CRL is there yet,
 * in which case every client certificate fails ("unable to get certificate CRL"). Node turns the same flags on only
 * when it is given a CRL; this one, matching no real issuer, turns them on without revoking anything.
 */
const CRL_CHECK_ENABLER = `-----BEGIN X509 CRL-----
MIHgMIGIAgEBMAoGCCqGSM49BAMCMDIxMDAuBgNVBAMTJ3BndGxzIENSTC1jaGVj
ayBlbmFibGVyIChubyBrZXkgZXhpc3RzKRcNMjUwMTAxMDAwMDAwWhgPMjEyNTAx
MDEwMDAwMDBaoCMwITAfBgNVHSMEGDAWgBRpSMoBrbs3u1/SnyVhmwsYwfhk9jAK
BggqhkjOPQQDAgNHADBEAiBuwn1gbVDNm6MjGNHiqTS2UEmnxfhMOnIuGvGQ5Boj
awIgaJ07ZSHKyZqyGCTvLqfGvFI2cXxaduVf+eT8aKlR2xs=
-----END X509 CRL-----
`;

export interface TlsSettings {
  readonly ssl_cert_file: string;
  readonly ssl_key_file: string;
  readonly ssl_ca_file: string;
  readonly ssl_crl_file: string;
  readonly ssl_crl_dir: string;
  readonly ssl_ciphers: string;
  readonly ssl_tls13_ciphers: string;
  readonly ssl_groups: string;
  readonly ssl_prefer_server_ciphers: boolean;
  readonly ssl_min_protocol_version: TlsVersionName;
  readonly ssl_max_protocol_version: TlsVersionName | '';
  readonly ssl_dh_params_file: string;
  readonly ssl_passphrase_command: string;
  readonly ssl_passphrase_command_supports_reload: boolean;
}

export interface TlsMaterial {
  readonly context: SecureContext;
  /** Client certificates are requested (and verified when presented) only when ssl_ca_file is set. */
  readonly requestCert: boolean;
  readonly leaf: X509Certificate;
  readonly chainLength: number;
  /** The served chain as PEM, as read at load time (the native transport builds its context from it, not the file). */
  readonly chainPem: string;
  readonly settings: TlsSettings;
  /** Fingerprint of the CRL directory's contents when loaded; see TlsStore.current(). */
  readonly crlDirStamp: string;
  /** The key, kept so a CRL-directory refresh need not run the passphrase command again. Never logged. */
  readonly key: KeyObject;
}

function fail(message: string, details: Record<string, unknown> = {}, cause?: unknown): PgtlsError {
  return new PgtlsError(ERR_TLS_CONFIG, message, { details, ...(cause === undefined ? {} : { cause }) });
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    const reason =
      (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (cause as Error).message;
    throw fail(`could not load ${what} "${path}": ${reason}`, { file: path }, cause);
  }
}

/**
 * Every PEM certificate in a file, in order; throws with PostgreSQL's wording when there is none or one is bad.
 * `none` is OpenSSL's reason for a file without certificates: "no start line" for the server chain
 * (SSL_CTX_use_certificate_chain_file), "no certificate or crl found" for ssl_ca_file (X509_load_cert_crl_file).
 */
export function readCertificates(path: string, what: string, none = 'no start line'): X509Certificate[] {
  const text = readText(path, what);
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw fail(`could not load ${what} "${path}": ${none}`, { file: path });
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (cause) {
      throw fail(`could not load ${what} "${path}": ${(cause as Error).message}`, { file: path }, cause);
    }
  });
}

function loadKey(s: TlsSettings, isReload: boolean, previous?: TlsMaterial): KeyObject {
  checkServerKeyFile(s.ssl_key_file);
  const pem = readText(s.ssl_key_file, 'private key file');
  try {
    return createPrivateKey({ key: pem });
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    // Node 20 on OpenSSL 3 reports a missing passphrase as ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED ("interrupted or
    // cancelled"), not ERR_MISSING_PASSPHRASE: so also go by the PEM itself (PKCS#8 "ENCRYPTED PRIVATE KEY" or a
    // traditional key with "Proc-Type: 4,ENCRYPTED").
    const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(pem);
    if (
      !encrypted &&
      code !== 'ERR_MISSING_PASSPHRASE' &&
      code !== 'ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED' &&
      !/passphrase|bad decrypt/i.test((cause as Error).message)
    ) {
      throw fail(
        `could not load private key file "${s.ssl_key_file}": ${(cause as Error).message}`,
        { file: s.ssl_key_file },
        cause,
      );
    }
  }
  // The key is encrypted.
  if (isReload && !s.ssl_passphrase_command_supports_reload) {
    if (previous && previous.settings.ssl_key_file === s.ssl_key_file) return previous.key;
    throw fail(`private key file "${s.ssl_key_file}" cannot be reloaded because it requires a passphrase`, {
      file: s.ssl_key_file,
      hint: 'Set ssl_passphrase_command_supports_reload = on, or restart the gateway.',
    });
  }
  if (s.ssl_passphrase_command === '') {
    throw fail(
      `could not load private key file "${s.ssl_key_file}": the key is encrypted and no ssl_passphrase_command is set`,
      {
        file: s.ssl_key_file,
        hint: "Set ssl_passphrase_command (e.g. 'cat /run/secrets/key-passphrase'), or decrypt the key.",
      },
    );
  }
  const passphrase = runPassphraseCommand(s.ssl_passphrase_command, 'Enter PEM pass phrase:');
  try {
    return createPrivateKey({ key: pem, passphrase });
  } catch (cause) {
    throw fail(`could not load private key file "${s.ssl_key_file}": bad decrypt`, { file: s.ssl_key_file }, cause);
  }
}

/**
 * ssl_dh_params_file with load_dh_file()'s messages. Node accepts any text as dhparam without a word, so the PEM
 * block is checked here (PostgreSQL refuses a file without one: "no start line").
 */
function readDhParams(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const reason =
      (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (cause as Error).message;
    throw fail(`could not open DH parameters file "${path}": ${reason}`, { file: path }, cause);
  }
  if (!/-----BEGIN (X9\.42 )?DH PARAMETERS-----/.test(text)) {
    throw fail('could not load DH parameters file: no start line', { file: path });
  }
  return text;
}

function crlDirEntries(dir: string): { files: string[]; stamp: string } {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (cause) {
    // PostgreSQL hands the directory to X509_LOOKUP_add_dir(), which does not look at it: a missing directory is
    // accepted and holds no CRLs, so every client certificate fails ("unable to get certificate CRL") until it
    // appears (checked against PostgreSQL 18). The stamp makes a later appearance trigger a rebuild.
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { files: [], stamp: 'missing' };
    throw fail(
      `could not load SSL certificate revocation list directory "${dir}": ${(cause as Error).message}`,
      { file: dir },
      cause,
    );
  }
  const files = names.map((n) => join(dir, n)).filter((p) => statSync(p, { throwIfNoEntry: false })?.isFile());
  const stamp = files.map((f) => `${f}:${statSync(f).mtimeMs}:${statSync(f).size}`).join('|');
  return { files, stamp };
}

/** The CRL directory's current fingerprint; cheap enough to compute per connection (a few stat calls). */
export function crlDirStamp(dir: string): string {
  if (dir === '') return '';
  try {
    return crlDirEntries(dir).stamp;
  } catch {
    return 'unreadable';
  }
}

/** Load and check every ssl_* file and setting. Throws PgtlsError naming the file/setting on the first problem. */
export function loadTlsMaterial(
  s: TlsSettings,
  opts: { isReload?: boolean; previous?: TlsMaterial } = {},
): TlsMaterial {
  const chain = readCertificates(s.ssl_cert_file, 'server certificate file');
  const leaf = chain[0]!;
  const key = loadKey(s, opts.isReload ?? false, opts.previous);
  if (!leaf.checkPrivateKey(key)) {
    // PostgreSQL 18 reports this from SSL_CTX_use_PrivateKey_file(), which already compares the key with the loaded
    // certificate (OpenSSL 1.1 and 3): `could not load private key file "…": key values mismatch` (checked against
    // a running server). Its later "check of private key failed" branch is not reached in practice.
    throw fail(`could not load private key file "${s.ssl_key_file}": key values mismatch`, {
      file: s.ssl_key_file,
      certificate: s.ssl_cert_file,
      hint: `The key in ${s.ssl_key_file} does not belong to the first certificate in ${s.ssl_cert_file}.`,
    });
  }
  const min = s.ssl_min_protocol_version;
  const max = s.ssl_max_protocol_version;
  if (max !== '' && VERSION_ORDER.indexOf(min) > VERSION_ORDER.indexOf(max)) {
    throw fail('could not set SSL protocol version range', {
      detail: '"ssl_min_protocol_version" cannot be higher than "ssl_max_protocol_version"',
    });
  }
  const options: SecureContextOptions = {
    cert: chain.map((c) => c.toString()).join('\n'),
    // The decrypted key, as PEM in memory only (Node's context wants PEM or DER, not a KeyObject).
    key: key.export({ type: 'pkcs8', format: 'pem' }),
    minVersion: min,
    maxVersion: max === '' ? 'TLSv1.3' : max,
    // Node passes names starting with TLS_ to SSL_CTX_set_ciphersuites and the rest to SSL_CTX_set_cipher_list, and
    // caps the protocol at TLS 1.2 when no TLS 1.3 suite is named: so always name them, as PostgreSQL's two settings do.
    ciphers: `${s.ssl_ciphers}:${s.ssl_tls13_ciphers === '' ? OPENSSL_DEFAULT_TLS13 : s.ssl_tls13_ciphers}`,
    ecdhCurve: s.ssl_groups,
    honorCipherOrder: s.ssl_prefer_server_ciphers,
    // As PostgreSQL: no session tickets or caching, no renegotiation, no compression.
    secureOptions:
      constants.SSL_OP_NO_TICKET | (constants.SSL_OP_NO_RENEGOTIATION ?? 0) | constants.SSL_OP_NO_COMPRESSION,
    sessionTimeout: 0,
  };
  probe(
    { ciphers: `${s.ssl_ciphers}:${OPENSSL_DEFAULT_TLS13}` },
    'could not set the cipher list (no valid ciphers available)',
    'ssl_ciphers',
  );
  if (s.ssl_tls13_ciphers !== '') {
    if (s.ssl_tls13_ciphers.split(':').some((c) => !c.startsWith('TLS_'))) {
      throw fail('could not set the TLSv1.3 cipher suites (no valid ciphers available)', {
        setting: 'ssl_tls13_ciphers',
      });
    }
    probe(
      { ciphers: `${s.ssl_ciphers}:${s.ssl_tls13_ciphers}` },
      'could not set the TLSv1.3 cipher suites (no valid ciphers available)',
      'ssl_tls13_ciphers',
    );
  }
  // PostgreSQL 18's text (its fallback reason when OpenSSL queues none) and hint.
  probe(
    { ecdhCurve: s.ssl_groups },
    'could not set group names specified in ssl_groups: No valid groups found',
    'ssl_groups',
    'Ensure that each group name is spelled correctly and supported by the installed version of OpenSSL.',
  );
  if (s.ssl_dh_params_file !== '') options.dhparam = readDhParams(s.ssl_dh_params_file);
  let requestCert = false;
  if (s.ssl_ca_file !== '') {
    options.ca = readCertificates(s.ssl_ca_file, 'root certificate file', 'no certificate or crl found').map((c) =>
      c.toString(),
    );
    requestCert = true;
  }
  const crls: string[] = [];
  if (s.ssl_crl_file !== '') crls.push(readText(s.ssl_crl_file, 'SSL certificate revocation list file'));
  let stamp = '';
  if (s.ssl_crl_dir !== '') {
    const d = crlDirEntries(s.ssl_crl_dir);
    stamp = d.stamp;
    for (const f of d.files) crls.push(readText(f, 'SSL certificate revocation list file'));
  }
  if (s.ssl_crl_file !== '' || s.ssl_crl_dir !== '') {
    for (const [i, crl] of crls.entries()) {
      try {
        createSecureContext({ crl });
      } catch (cause) {
        const file = i === 0 && s.ssl_crl_file !== '' ? s.ssl_crl_file : s.ssl_crl_dir;
        // X509_load_cert_crl_file()'s reason for a file with no PEM CRL (or certificate) in it, as PostgreSQL prints it
        const reason = /-----BEGIN (X509 CRL|CERTIFICATE)-----/.test(crl)
          ? (cause as Error).message
          : 'no certificate or crl found';
        throw fail(`could not load SSL certificate revocation list file "${file}": ${reason}`, { file }, cause);
      }
    }
    options.crl = [...crls, CRL_CHECK_ENABLER];
  }
  let context: SecureContext;
  try {
    context = createSecureContext(options);
  } catch (cause) {
    throw fail(`could not create the TLS context: ${(cause as Error).message}`, {}, cause);
  }
  return Object.freeze({
    context,
    requestCert,
    leaf,
    chainLength: chain.length,
    chainPem: options.cert as string,
    settings: s,
    crlDirStamp: stamp,
    key,
  });
}

function probe(opts: SecureContextOptions, message: string, setting: string, hint?: string): void {
  try {
    createSecureContext(opts);
  } catch (cause) {
    throw fail(message, { setting, reason: (cause as Error).message, ...(hint ? { hint } : {}) }, cause);
  }
}

/**
 * The TLS material in force. Reload replaces it atomically; a handshake reads it once at its start.
 * ssl_crl_dir is consulted at connection time, as OpenSSL's hashed-directory lookup does for PostgreSQL: when the
 * directory's files changed since the material was built, it is rebuilt (same key, no passphrase prompt).
 */
export class TlsStore {
  #material: TlsMaterial;

  constructor(material: TlsMaterial) {
    this.#material = material;
  }

  swap(material: TlsMaterial): void {
    this.#material = material;
  }

  current(): TlsMaterial {
    const m = this.#material;
    if (m.settings.ssl_crl_dir !== '' && crlDirStamp(m.settings.ssl_crl_dir) !== m.crlDirStamp) {
      try {
        this.#material = loadTlsMaterial(m.settings, { isReload: true, previous: m });
      } catch {
        // A broken CRL file keeps the previous material in force; reload reports the error.
      }
    }
    return this.#material;
  }
}
