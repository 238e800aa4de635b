/**
 * Small, pure judgements shared by probe and doctor: what a server's first reply to a StartupMessage means, how
 * OpenSSL's verification codes read to a person, and which sslmode values would connect given what probe saw.
 */
import type { ServerErrorFields } from '../protocol/index.js';
import type { StoreContent } from './chain.js';
import type { StartupReply } from './wire.js';

export type StartupVerdict =
  /** The server went on to authentication (or trust): the transport was acceptable. */
  | { readonly accepted: true; readonly summary: string; readonly method: string }
  /** The server refused the session because of how we connected (no hba line for this encryption, client cert…). */
  | {
      readonly accepted: false;
      readonly summary: string;
      readonly reason: StartupRefusal;
      readonly error?: ServerErrorFields;
    }
  /** The server refused for another reason (unknown role, database…): transport fine, identity wrong. */
  | { readonly accepted: undefined; readonly summary: string; readonly error?: ServerErrorFields };

export type StartupRefusal = 'hba' | 'client-certificate' | 'ssl-required' | 'cert-auth' | 'other';

const AUTH_METHODS: Readonly<Record<number, string>> = {
  0: 'trust (no password)',
  2: 'Kerberos V5',
  3: 'password (cleartext)',
  5: 'MD5 password',
  7: 'GSSAPI',
  9: 'SSPI',
  10: 'SCRAM (SASL)',
};

/** Classify a server's first reply to a StartupMessage (PostgreSQL's texts from auth.c / hba.c, Azure's gateway). */
export function judgeStartup(reply: StartupReply): StartupVerdict {
  switch (reply.reply) {
    case 'auth': {
      const method = AUTH_METHODS[reply.code] ?? `authentication request ${reply.code}`;
      return { accepted: true, method, summary: `the server asks for ${method}` };
    }
    case 'error': {
      const m = reply.error.M ?? '';
      const summary = `${reply.error.S ?? 'FATAL'}: ${m}`;
      if (/no pg_hba\.conf entry|pg_hba\.conf rejects connection/.test(m))
        return { accepted: false, reason: 'hba', summary, error: reply.error };
      if (/requires a valid client certificate/.test(m))
        return { accepted: false, reason: 'client-certificate', summary, error: reply.error };
      if (
        /certificate authentication failed|certificate.*does not match|provided user name .* and authenticated/i.test(m)
      )
        return { accepted: false, reason: 'cert-auth', summary, error: reply.error };
      if (/SSL connection is required|SSL (?:is )?(?:off|required)|encryption is required/i.test(m))
        return { accepted: false, reason: 'ssl-required', summary, error: reply.error };
      // 28000 for an unknown role under trust, 3D000 for an unknown database: the transport was accepted.
      return { accepted: undefined, summary, error: reply.error };
    }
    case 'closed':
      return { accepted: false, reason: 'other', summary: 'the server closed the connection' };
    case 'timeout':
      return { accepted: false, reason: 'other', summary: 'no reply from the server' };
    default:
      return { accepted: false, reason: 'other', summary: `unexpected reply "${reply.type}"` };
  }
}

/**
 * OpenSSL's verify error (X509_V_ERR_… as pki/verify reports it, or Node's spelling without the prefix) → what it
 * means for this store, in one phrase.
 */
export function verifyReason(code: string | undefined, content?: StoreContent, topIssuer?: string): string {
  const c = code?.replace(/^X509_V_ERR_/, '');
  switch (c) {
    case undefined:
      return 'verifies';
    case 'CERT_HAS_EXPIRED':
      return 'a certificate in the chain has expired';
    case 'CERT_NOT_YET_VALID':
      return 'a certificate in the chain is not valid yet (clock skew, or issued for the future)';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'the server certificate is self-signed and is not in this store';
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the chain ends at a root that is not in this store';
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      if (content?.kind === 'pinned-intermediate')
        return `the store holds the intermediate "${content.subject}" but not the root above it ("${content.issuer}")`;
      if (content?.kind === 'pinned-leaf')
        return 'the store holds the server certificate itself, not the root that issued it';
      if (content?.kind === 'has-root')
        return 'the store has the root, but the server does not send the intermediate between them';
      return topIssuer
        ? `this store does not hold "${topIssuer}", the issuer of the last certificate the server sent`
        : 'no certificate in this store issues the top of the chain';
    case 'CERT_REVOKED':
      return 'a certificate in the chain is revoked';
    case 'CERT_SIGNATURE_FAILURE':
      return 'a signature in the chain does not verify';
    case 'INVALID_CA':
      return 'a certificate used as a CA is not a CA';
    case 'INVALID_PURPOSE':
      return 'the server certificate is not for TLS servers (extendedKeyUsage)';
    default:
      return c.toLowerCase().replace(/_/g, ' ');
  }
}

export const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSLMODES)[number];

export interface SslmodeFacts {
  /** Answer to SSLRequest. */
  readonly sslAnswer: string;
  /** TLS handshake with libpq's defaults (TLS 1.2+) worked. */
  readonly tlsOk: boolean;
  readonly tlsError?: string | undefined;
  /** The server accepts a session over TLS (undefined when we could not tell). */
  readonly tlsSessionAccepted?: boolean | undefined;
  readonly tlsSessionRefusal?: string | undefined;
  readonly plaintextAccepted?: boolean | undefined;
  readonly plaintextRefusal?: string | undefined;
  /** The root store verify-ca/verify-full would use: its label and OpenSSL's verdict. */
  readonly rootStore: {
    readonly label: string;
    readonly present: boolean;
    readonly verified: boolean;
    readonly reason: string;
  };
  /** sslrootcert was not given and ~/.postgresql/root.crt exists: libpq's require then verifies like verify-ca. */
  readonly requireVerifies: boolean;
  readonly hostnameMatch: boolean;
  readonly hostnameMessage?: string | undefined;
}

export interface SslmodeVerdict {
  readonly sslmode: SslMode;
  readonly connects: boolean;
  /** Encrypted, and whether the server was verified. */
  readonly security: 'none' | 'encrypted' | 'verified-ca' | 'verified-full' | 'n/a';
  readonly why: string;
}

/** Which sslmode values would connect, following libpq's negotiation (fe-connect.c). */
export function sslmodeVerdicts(f: SslmodeFacts): SslmodeVerdict[] {
  const tlsUsable = f.sslAnswer === 'S' && f.tlsOk;
  const tlsWhyNot =
    f.sslAnswer === 'N'
      ? 'the server does not accept TLS (answered N to SSLRequest)'
      : f.sslAnswer !== 'S'
        ? 'the server did not answer SSLRequest'
        : !f.tlsOk
          ? `the TLS handshake fails (${f.tlsError ?? 'unknown error'})`
          : f.tlsSessionAccepted === false
            ? `the server refuses the encrypted session (${f.tlsSessionRefusal ?? 'refused'})`
            : '';
  const tlsSession = tlsUsable && f.tlsSessionAccepted !== false;
  const plain = f.plaintextAccepted !== false;
  const plainWhyNot = `the server refuses unencrypted connections (${f.plaintextRefusal ?? 'refused'})`;
  const root = f.rootStore;
  const verifyWhyNot = !root.present
    ? `root certificate file "${root.label}" does not exist`
    : `the chain does not verify against ${root.label}: ${root.reason}`;
  const out: SslmodeVerdict[] = [];
  out.push(
    plain
      ? {
          sslmode: 'disable',
          connects: true,
          security: 'none',
          why: 'unencrypted: anyone on the path can read and alter the session',
        }
      : { sslmode: 'disable', connects: false, security: 'n/a', why: plainWhyNot },
  );
  // allow: plaintext first, TLS only if the server refuses the plaintext attempt.
  if (plain)
    out.push({
      sslmode: 'allow',
      connects: true,
      security: 'none',
      why: 'connects unencrypted (allow tries plaintext first)',
    });
  else if (tlsSession)
    out.push({
      sslmode: 'allow',
      connects: true,
      security: 'encrypted',
      why: 'plaintext is refused, so libpq retries with TLS; the server is not verified',
    });
  else out.push({ sslmode: 'allow', connects: false, security: 'n/a', why: `${plainWhyNot}, and ${tlsWhyNot}` });
  // prefer: TLS first; plaintext when the server says N or the TLS attempt fails.
  if (tlsSession)
    out.push({
      sslmode: 'prefer',
      connects: true,
      security: 'encrypted',
      why: 'encrypted, but the server is not verified',
    });
  else if (plain)
    out.push({ sslmode: 'prefer', connects: true, security: 'none', why: `falls back to unencrypted: ${tlsWhyNot}` });
  else out.push({ sslmode: 'prefer', connects: false, security: 'n/a', why: `${tlsWhyNot}, and ${plainWhyNot}` });
  // require: TLS; verifies like verify-ca when a default root.crt exists.
  if (!tlsSession) out.push({ sslmode: 'require', connects: false, security: 'n/a', why: tlsWhyNot });
  else if (f.requireVerifies && !root.verified)
    out.push({
      sslmode: 'require',
      connects: false,
      security: 'n/a',
      why: `~/.postgresql/root.crt exists, so require verifies the chain like verify-ca: ${root.reason}`,
    });
  else
    out.push({
      sslmode: 'require',
      connects: true,
      security: f.requireVerifies ? 'verified-ca' : 'encrypted',
      why: f.requireVerifies
        ? 'encrypted; the chain is verified because ~/.postgresql/root.crt exists'
        : 'encrypted, but the server is not verified',
    });
  if (!tlsSession) out.push({ sslmode: 'verify-ca', connects: false, security: 'n/a', why: tlsWhyNot });
  else if (!root.present || !root.verified)
    out.push({ sslmode: 'verify-ca', connects: false, security: 'n/a', why: verifyWhyNot });
  else
    out.push({
      sslmode: 'verify-ca',
      connects: true,
      security: 'verified-ca',
      why: `the chain verifies against ${root.label}; the host name is not checked`,
    });
  if (!tlsSession) out.push({ sslmode: 'verify-full', connects: false, security: 'n/a', why: tlsWhyNot });
  else if (!root.present || !root.verified)
    out.push({ sslmode: 'verify-full', connects: false, security: 'n/a', why: verifyWhyNot });
  else if (!f.hostnameMatch)
    out.push({
      sslmode: 'verify-full',
      connects: false,
      security: 'n/a',
      why: f.hostnameMessage ?? 'the host name does not match the certificate',
    });
  else
    out.push({
      sslmode: 'verify-full',
      connects: true,
      security: 'verified-full',
      why: `the chain verifies against ${root.label} and the host name matches`,
    });
  return out;
}
