/**
 * Just enough of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3) to read the server_name extension before the TLS
 * library sees the bytes, plus the one-record alert a server sends to refuse it. The gateway needs this for
 * PostgreSQL 19's SNI semantics: Node's SNICallback cannot send unrecognized_name, and the certificate request
 * (whether a host has a client CA) must be decided before the TLS socket exists. Pure and incremental.
 */

/** Largest ClientHello accepted (post-quantum key shares make them a few KiB; OpenSSL's own cap is larger). */
export const MAX_CLIENT_HELLO_LENGTH = 64 * 1024;

const CONTENT_HANDSHAKE = 22;
const CONTENT_ALERT = 21;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;

export type ClientHelloDecode =
  | { readonly status: 'need-more' }
  /** servername is undefined when the ClientHello has no server_name extension. */
  | { readonly status: 'client-hello'; readonly servername: string | undefined }
  /** decode_error: what PostgreSQL's callback (or OpenSSL) answers for a malformed hello. */
  | { readonly status: 'invalid'; readonly reason: string };

const NEED_MORE: ClientHelloDecode = Object.freeze({ status: 'need-more' });
const invalid = (reason: string): ClientHelloDecode => ({ status: 'invalid', reason });

/**
 * Read the ClientHello from the TLS records at the start of `buf` (a handshake message may span several records).
 * Nothing is consumed: the caller hands the same bytes on to the TLS library.
 */
export function decodeClientHello(buf: Uint8Array): ClientHelloDecode {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const parts: Buffer[] = [];
  let have = 0;
  let at = 0;
  let need = -1; // total handshake bytes (4-byte header + body) once known
  // Each iteration consumes one record of at least 6 bytes (5 header + 1 payload) of a bounded total.
  while (need < 0 || have < need) {
    if (b.length < at + 5) return NEED_MORE;
    if (b[at] !== CONTENT_HANDSHAKE)
      return invalid(at === 0 ? 'not a TLS handshake record' : 'record interleaved in the ClientHello');
    if (b[at + 1] !== 3) return invalid('unsupported record version');
    const len = b.readUInt16BE(at + 3);
    // RFC 8446 §5.1: zero-length handshake fragments are not allowed; plaintext records carry at most 2^14 bytes.
    if (len === 0 || len > 16384) return invalid('bad record length');
    if (b.length < at + 5 + len) return NEED_MORE;
    parts.push(b.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
    if (need < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('first handshake message is not a ClientHello');
      const bodyLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (bodyLen > MAX_CLIENT_HELLO_LENGTH) return invalid('ClientHello too long');
      need = 4 + bodyLen;
    }
  }
  const msg = Buffer.concat(parts).subarray(4, need);
  return parseBody(msg);
}

function parseBody(m: Buffer): ClientHelloDecode {
  let p = 0;
  const take = (n: number) => {
    if (p + n > m.length) return undefined;
    const s = m.subarray(p, p + n);
    p += n;
    return s;
  };
  const vec = (lenBytes: 1 | 2) => {
    const l = take(lenBytes);
    if (!l) return undefined;
    return take(lenBytes === 1 ? l[0]! : l.readUInt16BE(0));
  };
  if (!take(2) || !take(32)) return invalid('truncated ClientHello');
  const sid = vec(1);
  if (!sid || sid.length > 32) return invalid('bad session id');
  const suites = vec(2);
  if (!suites || suites.length < 2 || suites.length % 2 !== 0) return invalid('bad cipher suites');
  const comp = vec(1);
  if (!comp || comp.length < 1) return invalid('bad compression methods');
  if (p === m.length) return { status: 'client-hello', servername: undefined }; // no extensions at all
  const exts = vec(2);
  if (!exts || p !== m.length) return invalid('bad extensions block');
  let e = 0;
  let servername: string | undefined;
  let seen = false;
  while (e < exts.length) {
    if (e + 4 > exts.length) return invalid('truncated extension');
    const type = exts.readUInt16BE(e);
    const len = exts.readUInt16BE(e + 2);
    if (e + 4 + len > exts.length) return invalid('truncated extension');
    if (type === EXT_SERVER_NAME) {
      if (seen) return invalid('duplicate server_name extension');
      seen = true;
      const r = serverName(exts.subarray(e + 4, e + 4 + len));
      if (typeof r !== 'string') return r;
      servername = r;
    }
    e += 4 + len;
  }
  return { status: 'client-hello', servername };
}

/** The checks sni_clienthello_cb() makes, in its order (each failure is decode_error there too). */
function serverName(x: Buffer): string | ClientHelloDecode {
  if (x.length <= 2) return invalid('server_name extension too short');
  const listLen = x.readUInt16BE(0);
  if (listLen + 2 !== x.length) return invalid('server_name list length mismatch');
  if (x[2] !== NAME_TYPE_HOST_NAME) return invalid('server_name entry is not a host_name');
  if (x.length - 3 <= 2) return invalid('server_name entry too short');
  const nameLen = x.readUInt16BE(3);
  if (nameLen + 2 > x.length - 3) return invalid('server_name entry runs past the extension');
  const name = x.subarray(5, 5 + nameLen);
  // OpenSSL refuses an empty name or one with a NUL before any callback could use it.
  if (name.length === 0 || name.includes(0)) return invalid('bad host_name');
  return name.toString('utf8');
}

/** TLS alert descriptions used here (RFC 8446 §6). */
export const TLS_ALERT_DESCRIPTION = {
  handshake_failure: 40,
  decode_error: 50,
  unrecognized_name: 112,
} as const;
export type TlsAlertName = keyof typeof TLS_ALERT_DESCRIPTION;

/** One plaintext fatal alert record, as a server sends it before any ServerHello. */
export function encodeTlsAlert(alert: TlsAlertName): Buffer {
  // type 21, legacy_record_version 0x0303, length 2, level fatal (2), description
  return Buffer.from([CONTENT_ALERT, 3, 3, 0, 2, 2, TLS_ALERT_DESCRIPTION[alert]]);
}
