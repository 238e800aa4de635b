/**
 * SASLprep (RFC 4013 over RFC 3454) exactly as PostgreSQL applies it to SCRAM passwords (src/common/saslprep.c),
 * including its leniency: a password that is not valid UTF-8, or that SASLprep prohibits, is used as raw bytes
 * instead of failing (auth-scram.c, "SASLprep usage"). Both libpq and the server do this, so a client and a server
 * that follow the same rule agree on SaltedPassword for every password.
 *
 * PostgreSQL's quirks kept on purpose, because SaltedPassword must match theirs bit for bit:
 * - a pure-ASCII password is returned unchanged, control characters included;
 * - the prohibited-output and bidirectional checks look at the *mapped* code points (before NFKC), not the output;
 * - a password that maps to nothing (only B.1 characters) counts as prohibited.
 */
import { L_CAT, MAPPED_TO_NOTHING, NON_ASCII_SPACE, PROHIBITED, RAND_AL_CAT, UNASSIGNED } from './saslprep-tables.js';

export type SaslprepResult =
  | { readonly ok: true; readonly value: Buffer }
  | { readonly ok: false; readonly reason: 'invalid-utf8' | 'prohibited' };

function inTable(code: number, table: readonly number[]): boolean {
  // binary search over inclusive [first, last] pairs
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (code < table[mid * 2]!) hi = mid - 1;
    else if (code > table[mid * 2 + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * Decode UTF-8 as PostgreSQL's pg_utf8_islegal() accepts it: no overlong forms, no surrogates, nothing above
 * U+10FFFF, and no NUL (a C string ends there; callers never pass one). undefined when illegal.
 */
function decodeUtf8(bytes: Uint8Array): number[] | undefined {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b === 0) return undefined;
    if (b < 0x80) {
      out.push(b);
      i += 1;
      continue;
    }
    let len: number;
    let cp: number;
    if (b >= 0xc2 && b <= 0xdf) {
      len = 2;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      cp = b & 0x07;
    } else {
      return undefined;
    }
    if (i + len > bytes.length) return undefined;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) return undefined;
      cp = (cp << 6) | (c & 0x3f);
    }
    // second-byte ranges of pg_utf8_islegal: E0 A0.., ED ..9F, F0 90.., F4 ..8F
    const second = bytes[i + 1]!;
    if (b === 0xe0 && second < 0xa0) return undefined;
    if (b === 0xed && second > 0x9f) return undefined;
    if (b === 0xf0 && second < 0x90) return undefined;
    if (b === 0xf4 && second > 0x8f) return undefined;
    out.push(cp);
    i += len;
  }
  return out;
}

/** PostgreSQL's pg_saslprep(): the prepared password, or why SASLprep does not apply. */
export function saslprep(input: string | Uint8Array): SaslprepResult {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input);
  if (bytes.every((b) => b < 0x80)) return { ok: true, value: bytes };
  const chars = decodeUtf8(bytes);
  if (!chars) return { ok: false, reason: 'invalid-utf8' };
  // 1) map: non-ASCII spaces to U+0020, B.1 to nothing
  const mapped: number[] = [];
  for (const code of chars) {
    if (inTable(code, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inTable(code, MAPPED_TO_NOTHING)) mapped.push(code);
  }
  if (mapped.length === 0) return { ok: false, reason: 'prohibited' };
  // 2) normalize (NFKC). 3) and 4) below check `mapped`, as PostgreSQL does.
  const normalized = mapped
    .map((c) => String.fromCodePoint(c))
    .join('')
    .normalize('NFKC');
  for (const code of mapped) {
    if (inTable(code, PROHIBITED) || inTable(code, UNASSIGNED)) return { ok: false, reason: 'prohibited' };
  }
  if (mapped.some((c) => inTable(c, RAND_AL_CAT))) {
    if (mapped.some((c) => inTable(c, L_CAT))) return { ok: false, reason: 'prohibited' };
    if (!inTable(mapped[0]!, RAND_AL_CAT) || !inTable(mapped[mapped.length - 1]!, RAND_AL_CAT)) {
      return { ok: false, reason: 'prohibited' };
    }
  }
  return { ok: true, value: Buffer.from(normalized, 'utf8') };
}

/** The bytes PostgreSQL hashes for a SCRAM password: SASLprep'd when possible, otherwise the raw bytes. */
export function scramPasswordBytes(password: string | Uint8Array): Buffer {
  const r = saslprep(password);
  if (r.ok) return r.value;
  return typeof password === 'string' ? Buffer.from(password, 'utf8') : Buffer.from(password);
}
