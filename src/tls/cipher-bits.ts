/**
 * Symmetric key bits of a negotiated cipher, as OpenSSL's SSL_get_cipher_bits() reports them and pg_stat_ssl.bits
 * shows them. Node does not expose that call, so it is derived from the cipher's name (OpenSSL and IANA spellings).
 */
const RULES: readonly [RegExp, number][] = [
  [/CHACHA20/, 256],
  [/(AES|CAMELLIA|ARIA)_?256/, 256],
  [/(AES|CAMELLIA|ARIA)_?128/, 128],
  [/^(AES|DHE-RSA-AES|ECDHE-\w+-AES)(-|$)/, 128],
  [/SEED/, 128],
  [/(DES-CBC3|3DES)/, 112],
  [/RC4/, 128],
  [/NULL/, 0],
];

export function cipherBits(name: string): number {
  for (const [re, bits] of RULES) if (re.test(name)) return bits;
  return 0;
}
