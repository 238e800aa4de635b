/**
 * Stored secrets and the non-SCRAM password checks, as PostgreSQL does them (src/backend/libpq/crypt.c,
 * auth.c recv_password_packet), plus what PgBouncer adds for an auth_file: a plaintext password works with every
 * method. All comparisons are constant-time. Nothing here logs, and no result carries a secret.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SqlState } from '../protocol/constants.js';
import {
  type ScramFailure,
  type ScramSecret,
  b64decode,
  constantTimeEqual,
  keysFromSalted,
  parseScramSecret,
  saltedPassword,
} from '../protocol/scram.js';

export type StoredSecret =
  | { readonly kind: 'scram'; readonly scram: ScramSecret }
  | { readonly kind: 'md5'; readonly hash: string }
  | { readonly kind: 'plain'; readonly password: string };

/** MD5_PASSWD_LEN: "md5" + 32 lowercase hex digits. */
const MD5_SECRET = /^md5[0-9a-f]{32}$/;

/** get_password_type(): an md5 secret, a SCRAM secret, or (anything else) a plaintext password. */
export function classifySecret(text: string): StoredSecret {
  if (MD5_SECRET.test(text)) return { kind: 'md5', hash: text };
  const scram = parseScramSecret(text);
  if (scram) return { kind: 'scram', scram };
  return { kind: 'plain', password: text };
}

const bytes = (v: string | Uint8Array) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v));

const md5hex = (data: Buffer | string) =>
  createHash('md5')
    .update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
    .digest('hex');

/** PostgreSQL's md5 secret: "md5" + md5(password + user). */
export function md5Secret(user: string, password: string | Uint8Array): string {
  return `md5${md5hex(Buffer.concat([bytes(password), Buffer.from(user, 'utf8')]))}`;
}

/**
 * The client's answer to AuthenticationMD5Password: "md5" + md5(md5hex(password + user) + salt). `secretOrPassword`
 * may be the md5 secret itself — which is all a client needs, and why md5 secrets are password-equivalent.
 */
export function md5Response(user: string, secretOrPassword: string, salt: Uint8Array): string {
  const inner = MD5_SECRET.test(secretOrPassword)
    ? secretOrPassword.slice(3)
    : md5Secret(user, secretOrPassword).slice(3);
  return `md5${md5hex(Buffer.concat([Buffer.from(inner, 'latin1'), Buffer.from(salt)]))}`;
}

/** A fresh 4-byte salt for AuthenticationMD5Password. */
export const md5Salt = (): Buffer => randomBytes(4);

export type PasswordCheck = { readonly ok: true } | { readonly ok: false; readonly logDetail: string };

const mismatch = (user: string): PasswordCheck => ({
  ok: false,
  logDetail: `Password does not match for user "${user}".`,
});

/** FATAL 28P01, auth_failed()'s text for password, md5 and SCRAM. */
export function passwordAuthFailed(user: string): ScramFailure {
  return { sqlstate: SqlState.InvalidPassword, message: `password authentication failed for user "${user}"` };
}

/**
 * md5_crypt_verify(): the client's md5 response against the stored secret. A SCRAM secret cannot serve md5
 * (PostgreSQL switches such a user to SCRAM before asking; the gateway should too). A plaintext auth_file password
 * is hashed first, as PgBouncer does.
 */
export function verifyMd5Response(
  user: string,
  stored: string | undefined,
  salt: Uint8Array,
  response: string,
): PasswordCheck {
  if (stored === undefined) return { ok: false, logDetail: `Role "${user}" does not exist.` };
  const secret = classifySecret(stored);
  if (secret.kind === 'scram') {
    return { ok: false, logDetail: `User "${user}" has a password that cannot be used with MD5 authentication.` };
  }
  const expected = md5Response(user, secret.kind === 'md5' ? secret.hash : secret.password, salt);
  return constantTimeEqual(Buffer.from(response, 'utf8'), Buffer.from(expected, 'latin1'))
    ? { ok: true }
    : mismatch(user);
}

/**
 * plain_crypt_verify(): a cleartext password (PasswordMessage) against the stored secret — a SCRAM secret through
 * SASLprep and the secret's salt and iterations (comparing ServerKey, as scram_verify_plain_password does), an md5
 * secret through md5(password + user), a plaintext one directly.
 */
export function verifyCleartextPassword(
  user: string,
  stored: string | undefined,
  password: string | Uint8Array,
): PasswordCheck {
  if (stored === undefined) return { ok: false, logDetail: `Role "${user}" does not exist.` };
  const secret = classifySecret(stored);
  switch (secret.kind) {
    case 'scram': {
      const salt = b64decode(secret.scram.salt);
      if (!salt) return { ok: false, logDetail: `invalid SCRAM secret for user "${user}"` };
      const { serverKey } = keysFromSalted(saltedPassword(password, salt, secret.scram.iterations));
      return constantTimeEqual(serverKey, secret.scram.serverKey) ? { ok: true } : mismatch(user);
    }
    case 'md5':
      return constantTimeEqual(Buffer.from(md5Secret(user, password), 'latin1'), Buffer.from(secret.hash, 'latin1'))
        ? { ok: true }
        : mismatch(user);
    case 'plain':
      return constantTimeEqual(bytes(password), Buffer.from(secret.password, 'utf8')) ? { ok: true } : mismatch(user);
  }
}

/**
 * recv_password_packet(): the body of a PasswordMessage ('p') — a NUL-terminated string filling the message, not
 * empty. The error is what PostgreSQL sends.
 */
export function parsePasswordPacket(
  body: Uint8Array,
): { readonly password: Buffer } | { readonly error: ScramFailure } {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const nul = buf.indexOf(0);
  if (nul < 0 || nul !== buf.length - 1) {
    return { error: { sqlstate: SqlState.ProtocolViolation, message: 'invalid password packet size' } };
  }
  if (buf.length === 1) {
    return { error: { sqlstate: SqlState.InvalidPassword, message: 'empty password returned by client' } };
  }
  // bytes, not a string: a password in another encoding must reach the hash unchanged (SASLprep falls back to them)
  return { password: Buffer.from(buf.subarray(0, nul)) };
}
