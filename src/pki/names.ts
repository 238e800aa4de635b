/**
 * Distinguished names the way OpenSSL compares and hashes them.
 *
 * OpenSSL never compares names byte for byte: X509_NAME_cmp compares a *canonical encoding* (crypto/x509/x_name.c,
 * x509_name_canon): each string value of a canonicalisable type is converted to UTF-8, leading/trailing whitespace is
 * dropped, inner whitespace runs become one space and ASCII letters are lower-cased; then every RDN is DER-encoded as
 * a SET OF AttributeTypeAndValue and the SETs are concatenated (no outer SEQUENCE). X509_NAME_hash — the `<hash>` in
 * `<hash>.0` / `<hash>.r0` files of a hashed directory (c_rehash, ssl_crl_dir) — is the first four bytes of the SHA-1
 * of that encoding, read little-endian. Issuer lookup in our chain builder uses the same equality, so "which
 * certificate signed which" agrees with OpenSSL even when a CA re-encoded its name (PrintableString vs UTF8String).
 */
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';

/** ASN.1 string types OpenSSL canonicalises (ASN1_MASK_CANON); any other type is kept as encoded. */
const CANON_TYPES = new Map<number, 'utf8' | 'latin1' | 'bmp' | 'universal'>([
  [12, 'utf8'], // UTF8String
  [19, 'latin1'], // PrintableString
  [20, 'latin1'], // T61String / TeletexString: OpenSSL converts it as ISO 8859-1
  [22, 'latin1'], // IA5String
  [26, 'latin1'], // VisibleString
  [28, 'universal'], // UniversalString (UCS-4 big-endian)
  [30, 'bmp'], // BMPString (UCS-2 big-endian)
]);

function decodeString(bytes: Uint8Array, kind: 'utf8' | 'latin1' | 'bmp' | 'universal'): string {
  const b = Buffer.from(bytes);
  switch (kind) {
    case 'utf8':
      return b.toString('utf8');
    case 'latin1':
      return b.toString('latin1');
    case 'bmp':
      return Buffer.from(b).swap16().toString('utf16le');
    default: {
      let s = '';
      for (let i = 0; i + 3 < b.length; i += 4) s += String.fromCodePoint(b.readUInt32BE(i));
      return s;
    }
  }
}

/** ossl_isspace: space, \t, \n, \v, \f, \r. */
const SPACE = /[ \t\n\v\f\r]/;

/** asn1_string_canon: trim, collapse whitespace runs, lower-case ASCII only (non-ASCII is copied untouched). */
export function canonicalValue(value: string): string {
  let s = value.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');
  s = s.replace(/[ \t\n\v\f\r]+/g, ' ');
  let out = '';
  for (const ch of s) out += ch >= 'A' && ch <= 'Z' ? ch.toLowerCase() : SPACE.test(ch) ? ' ' : ch;
  return out;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function parse(der: Uint8Array): asn1js.AsnType {
  const ab = new ArrayBuffer(der.byteLength);
  new Uint8Array(ab).set(der);
  const r = asn1js.fromBER(ab);
  if (r.offset === -1) throw new Error(`bad DER: ${r.result.error}`);
  return r.result;
}

function children(node: asn1js.AsnType): asn1js.AsnType[] {
  const vb = (node as asn1js.Constructed).valueBlock as { value?: asn1js.AsnType[] };
  return Array.isArray(vb.value) ? vb.value : [];
}

function ber(node: asn1js.AsnType): Uint8Array {
  return new Uint8Array(node.toBER(false));
}

/** The canonical encoding of a DER Name (see the file comment). */
export function canonicalNameEncoding(nameDer: Uint8Array): Buffer {
  const parts: Uint8Array[] = [];
  for (const rdn of children(parse(nameDer))) {
    const atvs = children(rdn).map((atv) => {
      const [type, value] = children(atv);
      if (!type || !value) throw new Error('bad DER: AttributeTypeAndValue without a value');
      const kind = value.idBlock.tagClass === 1 ? CANON_TYPES.get(value.idBlock.tagNumber) : undefined;
      const canonical =
        kind === undefined
          ? value
          : new asn1js.Utf8String({
              value: canonicalValue(
                decodeString(new Uint8Array((value as asn1js.BaseStringBlock).valueBlock.valueHexView), kind),
              ),
            });
      return ber(new asn1js.Sequence({ value: [type, canonical] }));
    });
    // DER orders the members of a SET OF by their encodings.
    atvs.sort(compareBytes);
    parts.push(ber(new asn1js.Set({ value: atvs.map((e) => parse(e)) })));
  }
  return Buffer.concat(parts);
}

/** X509_NAME_hash (OpenSSL ≥ 1.0.0): 8 lower-case hex digits, as `openssl x509 -hash` / `openssl crl -hash` print. */
export function subjectNameHash(nameDer: Uint8Array): string {
  const md = createHash('sha1').update(canonicalNameEncoding(nameDer)).digest();
  return ((md[0]! | (md[1]! << 8) | (md[2]! << 16) | (md[3]! << 24)) >>> 0).toString(16).padStart(8, '0');
}

/** OpenSSL's name equality (X509_NAME_cmp == 0). */
export function namesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return canonicalNameEncoding(a).equals(canonicalNameEncoding(b));
}

/** The raw DER issuer and subject Names of a certificate (as signed, not re-encoded). */
export function certificateNames(certDer: Uint8Array): { issuer: Uint8Array; subject: Uint8Array } {
  const tbs = children(children(parse(certDer))[0]!);
  // TBSCertificate: [0] version (optional, context-specific), serial, signature, issuer, validity, subject, …
  const base = tbs[0]?.idBlock.tagClass === 3 ? 1 : 0;
  const issuer = tbs[base + 2];
  const subject = tbs[base + 4];
  if (!issuer || !subject) throw new Error('bad DER: certificate without issuer or subject');
  return { issuer: ber(issuer), subject: ber(subject) };
}

/** The raw DER issuer Name of a CRL. */
export function crlIssuerName(crlDer: Uint8Array): Uint8Array {
  const tbs = children(children(parse(crlDer))[0]!);
  // TBSCertList: version INTEGER (optional, universal tag 2), signature, issuer, …
  const base = tbs[0]?.idBlock.tagClass === 1 && tbs[0]?.idBlock.tagNumber === 2 ? 1 : 0;
  const issuer = tbs[base + 1];
  if (!issuer) throw new Error('bad DER: CRL without issuer');
  return ber(issuer);
}
