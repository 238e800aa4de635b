/**
 * The files libpq's initialize_SSL() reads for one TLS attempt — root certificates, CRLs, the client certificate and
 * key — with its order, its rules (a root file that exists turns verification on; a key must not be group/world
 * accessible) and its messages. Returns Node SecureContext options, or libpq's error text.
 */
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { crlIssuerName, namesEqual, subjectNameHash } from '../pki/names.js';
import type { ConnectionPlan } from './resolve.js';

export interface TlsMaterial {
  /** PEM root certificates; undefined means "no verification" (no root file and not a verify mode). */
  readonly ca?: string[];
  readonly verify: boolean;
  readonly rootSource?: string;
  readonly crl?: string[];
  readonly crlSources: readonly string[];
  readonly cert?: string;
  readonly key?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export type MaterialResult = { ok: true; value: TlsMaterial } | { ok: false; message: string; reason?: string };

const ROOT_HINT =
  "Either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.";

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => `${m[0]}\n`);
}

/** The issuer name (DER) of a PEM CRL, or undefined if it does not parse. */
function crlIssuer(pem: string): Uint8Array | undefined {
  try {
    const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    return crlIssuerName(new Uint8Array(Buffer.from(b64, 'base64')));
  } catch {
    return undefined;
  }
}

/** A file's text for PEM parsing; a directory reads as empty, as OpenSSL's fopen/fread of one does on Linux. */
function readPemText(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') return '';
    throw err;
  }
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return (
    {
      ENOENT: 'No such file or directory',
      EACCES: 'Permission denied',
      ENOTDIR: 'Not a directory',
      EISDIR: 'Is a directory',
      ELOOP: 'Too many levels of symbolic links',
    }[code ?? ''] ?? String((err as Error).message)
  );
}

/** The system trust store as OpenSSL's default verify paths would find it (SSL_CERT_FILE / SSL_CERT_DIR first). */
function systemRoots(plan: ConnectionPlan): { certs: string[]; source: string } {
  const files = plan.systemStore.file
    ? [plan.systemStore.file]
    : [
        '/etc/ssl/certs/ca-certificates.crt',
        '/etc/pki/tls/certs/ca-bundle.crt',
        '/etc/ssl/cert.pem',
        '/usr/local/ssl/cert.pem',
      ];
  const certs: string[] = [];
  let source = '';
  for (const f of files) {
    try {
      certs.push(...pemBlocks(readFileSync(f, 'utf8'), 'CERTIFICATE'));
      source = f;
      break;
    } catch {
      // try the next well-known location
    }
  }
  const dir = plan.systemStore.dir;
  if (dir) {
    for (const d of dir.split(':')) {
      let names: string[] = [];
      try {
        names = readdirSync(d);
      } catch {
        continue;
      }
      for (const name of names) {
        if (!/^[0-9a-f]{8}\.\d+$/.test(name)) continue;
        try {
          certs.push(...pemBlocks(readFileSync(join(d, name), 'utf8'), 'CERTIFICATE'));
        } catch {
          // unreadable entries are skipped, as OpenSSL's hashed-directory lookup does
        }
      }
      source = source ? `${source}, ${d}` : d;
    }
  }
  return { certs, source };
}

/** Load a private key the way libpq does: PEM first, then DER; encrypted keys with sslpassword. */
function loadKey(data: Buffer, passphrase: string | undefined): string {
  const tries: Parameters<typeof createPrivateKey>[0][] = [
    { key: data, format: 'pem', ...(passphrase ? { passphrase } : {}) },
    { key: data, format: 'der', type: 'pkcs8', ...(passphrase ? { passphrase } : {}) },
    { key: data, format: 'der', type: 'pkcs1' },
    { key: data, format: 'der', type: 'sec1' },
  ];
  let first: unknown;
  for (const t of tries) {
    try {
      return createPrivateKey(t).export({ format: 'pem', type: 'pkcs8' }) as string;
    } catch (err) {
      first ??= err;
    }
  }
  throw first;
}

function opensslReason(err: unknown, havePassword: boolean): string {
  const e = err as { reason?: string; message?: string; code?: string };
  // An encrypted key and no sslpassword: libpq leaves OpenSSL's default passphrase prompt in place, which fails
  // without a terminal; libpq 18 (OpenSSL 1.1) then reports "processing error".
  if (
    !havePassword &&
    /passphrase|interrupted or cancelled|problems getting password/i.test(`${e.reason ?? ''} ${e.message ?? ''}`)
  ) {
    return 'processing error';
  }
  if (e.reason) return e.reason;
  const msg = e.message ?? String(err);
  if (/bad decrypt/i.test(msg)) return 'bad decrypt';
  if (/passphrase/i.test(msg)) return 'bad decrypt';
  return msg;
}

export function loadTlsMaterial(plan: ConnectionPlan): MaterialResult {
  const ssl = plan.ssl;
  const params = plan.params;
  let ca: string[] | undefined;
  let rootSource: string | undefined;
  let crl: string[] | undefined;
  const crlSources: string[] = [];

  if (ssl.rootCert === 'system') {
    const sys = systemRoots(plan);
    ca = sys.certs;
    rootSource = sys.source || 'system';
  } else {
    let exists = false;
    if (ssl.rootCert !== '') {
      try {
        statSync(ssl.rootCert);
        exists = true;
      } catch {
        exists = false;
      }
    }
    if (exists) {
      let text: string;
      try {
        text = readPemText(ssl.rootCert);
      } catch (err) {
        return {
          ok: false,
          message: `could not read root certificate file "${ssl.rootCert}": system lib`,
          reason: errnoText(err),
        };
      }
      const certs = pemBlocks(text, 'CERTIFICATE');
      const crls = pemBlocks(text, 'X509 CRL');
      if (certs.length === 0 && crls.length === 0) {
        return {
          ok: false,
          message: `could not read root certificate file "${ssl.rootCert}": no certificate or crl found`,
          reason: 'the file holds no PEM certificate (DER is not accepted for sslrootcert)',
        };
      }
      ca = certs;
      rootSource = ssl.rootCert;
      // CRLs: sslcrl and/or sslcrldir, else ~/.postgresql/root.crl; a file that cannot be loaded means no CRL check
      // at all (X509_STORE_load_locations fails before it looks at the directory), silently, as libpq does.
      const crlFile = ssl.crl;
      const crlDir = ssl.crlDir;
      if (crlFile || crlDir) {
        let fileOk = true;
        const loaded: string[] = [...crls];
        if (crlFile) {
          try {
            const found = pemBlocks(readFileSync(crlFile, 'latin1'), 'X509 CRL');
            if (found.length === 0) fileOk = false;
            loaded.push(...found);
            if (fileOk) crlSources.push(crlFile);
          } catch {
            fileOk = false;
          }
        }
        if (fileOk && crlDir) {
          // OpenSSL's hashed directory: <issuer hash>.r<n>; looked up lazily, so a missing directory just means
          // "no CRL found" for every certificate — and with CRL checking on, that fails verification.
          // OpenSSL consults the directory only for issuers with no CRL already in the store, and finds a CRL only
          // under its issuer's name hash: keep exactly those.
          const known = loaded.map(crlIssuer).filter((n): n is Uint8Array => n !== undefined);
          try {
            for (const name of readdirSync(crlDir).sort()) {
              const m = /^([0-9a-f]{8})\.r\d+$/.exec(name);
              if (!m) continue;
              try {
                for (const pem of pemBlocks(readFileSync(join(crlDir, name), 'latin1'), 'X509 CRL')) {
                  const issuer = crlIssuer(pem);
                  if (!issuer || subjectNameHash(issuer) !== m[1]) continue;
                  if (known.some((k) => namesEqual(k, issuer))) continue;
                  loaded.push(pem);
                }
              } catch {
                // unreadable entry: skipped
              }
            }
          } catch {
            // directory absent or unreadable
          }
          crlSources.push(crlDir);
        }
        if (fileOk) crl = loaded;
      }
    } else if (ssl.mode === 'verify-ca' || ssl.mode === 'verify-full') {
      if (ssl.rootCert === '') {
        return { ok: false, message: `could not get home directory to locate root certificate file\n${ROOT_HINT}` };
      }
      return { ok: false, message: `root certificate file "${ssl.rootCert}" does not exist\n${ROOT_HINT}` };
    }
  }

  // Client certificate: sslcertmode=disable never sends one; a missing file means "no certificate".
  let cert: string | undefined;
  let certFile: string | undefined;
  if (ssl.certMode !== 'disable' && ssl.cert !== '') {
    let st: ReturnType<typeof statSync> | undefined;
    try {
      st = statSync(ssl.cert);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        return { ok: false, message: `could not open certificate file "${ssl.cert}": ${errnoText(err)}` };
      }
    }
    if (st) {
      let text = '';
      try {
        text = readPemText(ssl.cert);
      } catch (err) {
        return {
          ok: false,
          message: `could not read certificate file "${ssl.cert}": system lib`,
          reason: errnoText(err),
        };
      }
      const blocks = pemBlocks(text, 'CERTIFICATE');
      if (blocks.length === 0) {
        return {
          ok: false,
          message: `could not read certificate file "${ssl.cert}": no start line`,
          reason: 'the file holds no PEM certificate (sslcert must be PEM)',
        };
      }
      cert = blocks.join('');
      certFile = ssl.cert;
    }
  }

  let key: string | undefined;
  let keyFile: string | undefined;
  if (cert !== undefined && ssl.key !== '') {
    keyFile = ssl.key;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(ssl.key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { ok: false, message: `certificate present, but not private key file "${ssl.key}"` };
      }
      return { ok: false, message: `could not stat private key file "${ssl.key}": ${errnoText(err)}` };
    }
    if (!st.isFile()) return { ok: false, message: `private key file "${ssl.key}" is not a regular file` };
    if (process.platform !== 'win32') {
      // Root-owned keys may be 0640 (system-wide keys read through a group); anything else must be 0600 or less.
      const bad = st.uid === 0 ? st.mode & 0o037 : st.mode & 0o077;
      if (bad) {
        return {
          ok: false,
          message: `private key file "${ssl.key}" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root`,
          reason: `mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, owner uid ${st.uid}`,
        };
      }
    }
    try {
      key = loadKey(readFileSync(ssl.key), params.sslpassword || undefined);
    } catch (err) {
      return {
        ok: false,
        message: `could not load private key file "${ssl.key}": ${opensslReason(err, Boolean(params.sslpassword))}`,
        reason: (err as Error).message,
      };
    }
    // SSL_use_PrivateKey_file() refuses a key that does not belong to the certificate already loaded.
    try {
      const fromKey = createPublicKey(key).export({ format: 'der', type: 'spki' });
      const fromCert = new X509Certificate(cert).publicKey.export({ format: 'der', type: 'spki' });
      if (!Buffer.from(fromKey).equals(Buffer.from(fromCert))) {
        return {
          ok: false,
          message: `could not load private key file "${ssl.key}": key values mismatch`,
          reason: 'the private key does not belong to the client certificate',
        };
      }
    } catch (err) {
      return {
        ok: false,
        message: `could not load private key file "${ssl.key}": ${opensslReason(err, Boolean(params.sslpassword))}`,
        reason: (err as Error).message,
      };
    }
  }
  return {
    ok: true,
    value: {
      ...(ca === undefined ? {} : { ca }),
      verify: ca !== undefined,
      ...(rootSource === undefined ? {} : { rootSource }),
      ...(crl === undefined ? {} : { crl }),
      crlSources,
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      ...(certFile === undefined ? {} : { certFile }),
      ...(keyFile === undefined ? {} : { keyFile }),
    },
  };
}
