/**
 * The cipher suites `pgtls scan` tries: every suite OpenSSL 3 can negotiate as a client with certificates (PSK and SRP
 * suites left out: they need a shared secret no scanner has), listed as `openssl ciphers -V -stdname
 * 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'` prints them, plus the five TLS 1.3 suites. A fixed table keeps the scan bounded
 * and lets policies classify suites (AEAD, HIGH) without asking OpenSSL at run time.
 */

export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
export const TLS_VERSIONS: readonly TlsVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

export interface CipherSuite {
  /** IANA code point, e.g. `0xc02f`. */
  readonly id: string;
  /** IANA / RFC name, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (the names Azure's documentation uses). */
  readonly iana: string;
  /** OpenSSL name, e.g. ECDHE-RSA-AES128-GCM-SHA256 (the names psql, sslscan and ssl_ciphers use). */
  readonly openssl: string;
  /** Oldest TLS version the suite can be negotiated with (TLS 1.3 suites only with TLS 1.3). */
  readonly minVersion: TlsVersion;
  readonly kx: string;
  readonly au: string;
  readonly enc: string;
  /** Symmetric key bits as OpenSSL reports them (0 for NULL encryption). */
  readonly bits: number;
  readonly mac: string;
  /** In OpenSSL's `HIGH` class (TLS 1.3 suites count as HIGH). */
  readonly high: boolean;
}

type Row = readonly [string, string, string, TlsVersion, string, string, string, number, string, 0 | 1];

// biome-ignore format: one suite per line reads as a table
const ROWS: readonly Row[] = [
  ['0x1301', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLSv1.3', 'any', 'any', 'AESGCM', 128, 'AEAD', 1],
  ['0x1302', 'TLS_AES_256_GCM_SHA384', 'TLS_AES_256_GCM_SHA384', 'TLSv1.3', 'any', 'any', 'AESGCM', 256, 'AEAD', 1],
  ['0x1303', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLSv1.3', 'any', 'any', 'CHACHA20/POLY1305', 256, 'AEAD', 1],
  ['0x1304', 'TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_SHA256', 'TLSv1.3', 'any', 'any', 'AESCCM', 128, 'AEAD', 1],
  ['0x1305', 'TLS_AES_128_CCM_8_SHA256', 'TLS_AES_128_CCM_8_SHA256', 'TLSv1.3', 'any', 'any', 'AESCCM8', 128, 'AEAD', 1],
  ['0xc02c', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESGCM', 256, 'AEAD', 1],
  ['0xc030', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'ECDHE-RSA-AES256-GCM-SHA384', 'TLSv1.2', 'ECDH', 'RSA', 'AESGCM', 256, 'AEAD', 1],
  ['0x00a3', 'TLS_DHE_DSS_WITH_AES_256_GCM_SHA384', 'DHE-DSS-AES256-GCM-SHA384', 'TLSv1.2', 'DH', 'DSS', 'AESGCM', 256, 'AEAD', 1],
  ['0x009f', 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384', 'DHE-RSA-AES256-GCM-SHA384', 'TLSv1.2', 'DH', 'RSA', 'AESGCM', 256, 'AEAD', 1],
  ['0xcca9', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'TLSv1.2', 'ECDH', 'ECDSA', 'CHACHA20/POLY1305', 256, 'AEAD', 1],
  ['0xcca8', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE-RSA-CHACHA20-POLY1305', 'TLSv1.2', 'ECDH', 'RSA', 'CHACHA20/POLY1305', 256, 'AEAD', 1],
  ['0xccaa', 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'DHE-RSA-CHACHA20-POLY1305', 'TLSv1.2', 'DH', 'RSA', 'CHACHA20/POLY1305', 256, 'AEAD', 1],
  ['0xc0af', 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8', 'ECDHE-ECDSA-AES256-CCM8', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESCCM8', 256, 'AEAD', 1],
  ['0xc0ad', 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM', 'ECDHE-ECDSA-AES256-CCM', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESCCM', 256, 'AEAD', 1],
  ['0xc0a3', 'TLS_DHE_RSA_WITH_AES_256_CCM_8', 'DHE-RSA-AES256-CCM8', 'TLSv1.2', 'DH', 'RSA', 'AESCCM8', 256, 'AEAD', 1],
  ['0xc09f', 'TLS_DHE_RSA_WITH_AES_256_CCM', 'DHE-RSA-AES256-CCM', 'TLSv1.2', 'DH', 'RSA', 'AESCCM', 256, 'AEAD', 1],
  ['0xc05d', 'TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384', 'ECDHE-ECDSA-ARIA256-GCM-SHA384', 'TLSv1.2', 'ECDH', 'ECDSA', 'ARIAGCM', 256, 'AEAD', 1],
  ['0xc061', 'TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384', 'ECDHE-ARIA256-GCM-SHA384', 'TLSv1.2', 'ECDH', 'RSA', 'ARIAGCM', 256, 'AEAD', 1],
  ['0xc057', 'TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384', 'DHE-DSS-ARIA256-GCM-SHA384', 'TLSv1.2', 'DH', 'DSS', 'ARIAGCM', 256, 'AEAD', 1],
  ['0xc053', 'TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384', 'DHE-RSA-ARIA256-GCM-SHA384', 'TLSv1.2', 'DH', 'RSA', 'ARIAGCM', 256, 'AEAD', 1],
  ['0x00a7', 'TLS_DH_anon_WITH_AES_256_GCM_SHA384', 'ADH-AES256-GCM-SHA384', 'TLSv1.2', 'DH', 'None', 'AESGCM', 256, 'AEAD', 1],
  ['0xc02b', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'ECDHE-ECDSA-AES128-GCM-SHA256', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESGCM', 128, 'AEAD', 1],
  ['0xc02f', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'TLSv1.2', 'ECDH', 'RSA', 'AESGCM', 128, 'AEAD', 1],
  ['0x00a2', 'TLS_DHE_DSS_WITH_AES_128_GCM_SHA256', 'DHE-DSS-AES128-GCM-SHA256', 'TLSv1.2', 'DH', 'DSS', 'AESGCM', 128, 'AEAD', 1],
  ['0x009e', 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256', 'DHE-RSA-AES128-GCM-SHA256', 'TLSv1.2', 'DH', 'RSA', 'AESGCM', 128, 'AEAD', 1],
  ['0xc0ae', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'ECDHE-ECDSA-AES128-CCM8', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESCCM8', 128, 'AEAD', 1],
  ['0xc0ac', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM', 'ECDHE-ECDSA-AES128-CCM', 'TLSv1.2', 'ECDH', 'ECDSA', 'AESCCM', 128, 'AEAD', 1],
  ['0xc0a2', 'TLS_DHE_RSA_WITH_AES_128_CCM_8', 'DHE-RSA-AES128-CCM8', 'TLSv1.2', 'DH', 'RSA', 'AESCCM8', 128, 'AEAD', 1],
  ['0xc09e', 'TLS_DHE_RSA_WITH_AES_128_CCM', 'DHE-RSA-AES128-CCM', 'TLSv1.2', 'DH', 'RSA', 'AESCCM', 128, 'AEAD', 1],
  ['0xc05c', 'TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256', 'ECDHE-ECDSA-ARIA128-GCM-SHA256', 'TLSv1.2', 'ECDH', 'ECDSA', 'ARIAGCM', 128, 'AEAD', 1],
  ['0xc060', 'TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256', 'ECDHE-ARIA128-GCM-SHA256', 'TLSv1.2', 'ECDH', 'RSA', 'ARIAGCM', 128, 'AEAD', 1],
  ['0xc056', 'TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256', 'DHE-DSS-ARIA128-GCM-SHA256', 'TLSv1.2', 'DH', 'DSS', 'ARIAGCM', 128, 'AEAD', 1],
  ['0xc052', 'TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256', 'DHE-RSA-ARIA128-GCM-SHA256', 'TLSv1.2', 'DH', 'RSA', 'ARIAGCM', 128, 'AEAD', 1],
  ['0x00a6', 'TLS_DH_anon_WITH_AES_128_GCM_SHA256', 'ADH-AES128-GCM-SHA256', 'TLSv1.2', 'DH', 'None', 'AESGCM', 128, 'AEAD', 1],
  ['0xc024', 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384', 'ECDHE-ECDSA-AES256-SHA384', 'TLSv1.2', 'ECDH', 'ECDSA', 'AES', 256, 'SHA384', 1],
  ['0xc028', 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384', 'ECDHE-RSA-AES256-SHA384', 'TLSv1.2', 'ECDH', 'RSA', 'AES', 256, 'SHA384', 1],
  ['0x006b', 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA256', 'DHE-RSA-AES256-SHA256', 'TLSv1.2', 'DH', 'RSA', 'AES', 256, 'SHA256', 1],
  ['0x006a', 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA256', 'DHE-DSS-AES256-SHA256', 'TLSv1.2', 'DH', 'DSS', 'AES', 256, 'SHA256', 1],
  ['0xc073', 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384', 'ECDHE-ECDSA-CAMELLIA256-SHA384', 'TLSv1.2', 'ECDH', 'ECDSA', 'Camellia', 256, 'SHA384', 1],
  ['0xc077', 'TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384', 'ECDHE-RSA-CAMELLIA256-SHA384', 'TLSv1.2', 'ECDH', 'RSA', 'Camellia', 256, 'SHA384', 1],
  ['0x00c4', 'TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256', 'DHE-RSA-CAMELLIA256-SHA256', 'TLSv1.2', 'DH', 'RSA', 'Camellia', 256, 'SHA256', 1],
  ['0x00c3', 'TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256', 'DHE-DSS-CAMELLIA256-SHA256', 'TLSv1.2', 'DH', 'DSS', 'Camellia', 256, 'SHA256', 1],
  ['0x006d', 'TLS_DH_anon_WITH_AES_256_CBC_SHA256', 'ADH-AES256-SHA256', 'TLSv1.2', 'DH', 'None', 'AES', 256, 'SHA256', 1],
  ['0x00c5', 'TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256', 'ADH-CAMELLIA256-SHA256', 'TLSv1.2', 'DH', 'None', 'Camellia', 256, 'SHA256', 1],
  ['0xc023', 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256', 'ECDHE-ECDSA-AES128-SHA256', 'TLSv1.2', 'ECDH', 'ECDSA', 'AES', 128, 'SHA256', 1],
  ['0xc027', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256', 'ECDHE-RSA-AES128-SHA256', 'TLSv1.2', 'ECDH', 'RSA', 'AES', 128, 'SHA256', 1],
  ['0x0067', 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA256', 'DHE-RSA-AES128-SHA256', 'TLSv1.2', 'DH', 'RSA', 'AES', 128, 'SHA256', 1],
  ['0x0040', 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA256', 'DHE-DSS-AES128-SHA256', 'TLSv1.2', 'DH', 'DSS', 'AES', 128, 'SHA256', 1],
  ['0xc072', 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256', 'ECDHE-ECDSA-CAMELLIA128-SHA256', 'TLSv1.2', 'ECDH', 'ECDSA', 'Camellia', 128, 'SHA256', 1],
  ['0xc076', 'TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'ECDHE-RSA-CAMELLIA128-SHA256', 'TLSv1.2', 'ECDH', 'RSA', 'Camellia', 128, 'SHA256', 1],
  ['0x00be', 'TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'DHE-RSA-CAMELLIA128-SHA256', 'TLSv1.2', 'DH', 'RSA', 'Camellia', 128, 'SHA256', 1],
  ['0x00bd', 'TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256', 'DHE-DSS-CAMELLIA128-SHA256', 'TLSv1.2', 'DH', 'DSS', 'Camellia', 128, 'SHA256', 1],
  ['0x006c', 'TLS_DH_anon_WITH_AES_128_CBC_SHA256', 'ADH-AES128-SHA256', 'TLSv1.2', 'DH', 'None', 'AES', 128, 'SHA256', 1],
  ['0x00bf', 'TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256', 'ADH-CAMELLIA128-SHA256', 'TLSv1.2', 'DH', 'None', 'Camellia', 128, 'SHA256', 1],
  ['0xc00a', 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA', 'ECDHE-ECDSA-AES256-SHA', 'TLSv1', 'ECDH', 'ECDSA', 'AES', 256, 'SHA1', 1],
  ['0xc014', 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA', 'ECDHE-RSA-AES256-SHA', 'TLSv1', 'ECDH', 'RSA', 'AES', 256, 'SHA1', 1],
  ['0x0039', 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA', 'DHE-RSA-AES256-SHA', 'TLSv1', 'DH', 'RSA', 'AES', 256, 'SHA1', 1],
  ['0x0038', 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA', 'DHE-DSS-AES256-SHA', 'TLSv1', 'DH', 'DSS', 'AES', 256, 'SHA1', 1],
  ['0x0088', 'TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA', 'DHE-RSA-CAMELLIA256-SHA', 'TLSv1', 'DH', 'RSA', 'Camellia', 256, 'SHA1', 1],
  ['0x0087', 'TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA', 'DHE-DSS-CAMELLIA256-SHA', 'TLSv1', 'DH', 'DSS', 'Camellia', 256, 'SHA1', 1],
  ['0xc019', 'TLS_ECDH_anon_WITH_AES_256_CBC_SHA', 'AECDH-AES256-SHA', 'TLSv1', 'ECDH', 'None', 'AES', 256, 'SHA1', 1],
  ['0x003a', 'TLS_DH_anon_WITH_AES_256_CBC_SHA', 'ADH-AES256-SHA', 'TLSv1', 'DH', 'None', 'AES', 256, 'SHA1', 1],
  ['0x0089', 'TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA', 'ADH-CAMELLIA256-SHA', 'TLSv1', 'DH', 'None', 'Camellia', 256, 'SHA1', 1],
  ['0xc009', 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA', 'ECDHE-ECDSA-AES128-SHA', 'TLSv1', 'ECDH', 'ECDSA', 'AES', 128, 'SHA1', 1],
  ['0xc013', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'ECDHE-RSA-AES128-SHA', 'TLSv1', 'ECDH', 'RSA', 'AES', 128, 'SHA1', 1],
  ['0x0033', 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA', 'DHE-RSA-AES128-SHA', 'TLSv1', 'DH', 'RSA', 'AES', 128, 'SHA1', 1],
  ['0x0032', 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA', 'DHE-DSS-AES128-SHA', 'TLSv1', 'DH', 'DSS', 'AES', 128, 'SHA1', 1],
  ['0x0045', 'TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA', 'DHE-RSA-CAMELLIA128-SHA', 'TLSv1', 'DH', 'RSA', 'Camellia', 128, 'SHA1', 1],
  ['0x0044', 'TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA', 'DHE-DSS-CAMELLIA128-SHA', 'TLSv1', 'DH', 'DSS', 'Camellia', 128, 'SHA1', 1],
  ['0xc018', 'TLS_ECDH_anon_WITH_AES_128_CBC_SHA', 'AECDH-AES128-SHA', 'TLSv1', 'ECDH', 'None', 'AES', 128, 'SHA1', 1],
  ['0x0034', 'TLS_DH_anon_WITH_AES_128_CBC_SHA', 'ADH-AES128-SHA', 'TLSv1', 'DH', 'None', 'AES', 128, 'SHA1', 1],
  ['0x0046', 'TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA', 'ADH-CAMELLIA128-SHA', 'TLSv1', 'DH', 'None', 'Camellia', 128, 'SHA1', 1],
  ['0x009d', 'TLS_RSA_WITH_AES_256_GCM_SHA384', 'AES256-GCM-SHA384', 'TLSv1.2', 'RSA', 'RSA', 'AESGCM', 256, 'AEAD', 1],
  ['0xc0a1', 'TLS_RSA_WITH_AES_256_CCM_8', 'AES256-CCM8', 'TLSv1.2', 'RSA', 'RSA', 'AESCCM8', 256, 'AEAD', 1],
  ['0xc09d', 'TLS_RSA_WITH_AES_256_CCM', 'AES256-CCM', 'TLSv1.2', 'RSA', 'RSA', 'AESCCM', 256, 'AEAD', 1],
  ['0xc051', 'TLS_RSA_WITH_ARIA_256_GCM_SHA384', 'ARIA256-GCM-SHA384', 'TLSv1.2', 'RSA', 'RSA', 'ARIAGCM', 256, 'AEAD', 1],
  ['0x009c', 'TLS_RSA_WITH_AES_128_GCM_SHA256', 'AES128-GCM-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'AESGCM', 128, 'AEAD', 1],
  ['0xc0a0', 'TLS_RSA_WITH_AES_128_CCM_8', 'AES128-CCM8', 'TLSv1.2', 'RSA', 'RSA', 'AESCCM8', 128, 'AEAD', 1],
  ['0xc09c', 'TLS_RSA_WITH_AES_128_CCM', 'AES128-CCM', 'TLSv1.2', 'RSA', 'RSA', 'AESCCM', 128, 'AEAD', 1],
  ['0xc050', 'TLS_RSA_WITH_ARIA_128_GCM_SHA256', 'ARIA128-GCM-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'ARIAGCM', 128, 'AEAD', 1],
  ['0x003d', 'TLS_RSA_WITH_AES_256_CBC_SHA256', 'AES256-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'AES', 256, 'SHA256', 1],
  ['0x00c0', 'TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256', 'CAMELLIA256-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'Camellia', 256, 'SHA256', 1],
  ['0x003c', 'TLS_RSA_WITH_AES_128_CBC_SHA256', 'AES128-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'AES', 128, 'SHA256', 1],
  ['0x00ba', 'TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'CAMELLIA128-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'Camellia', 128, 'SHA256', 1],
  ['0x0035', 'TLS_RSA_WITH_AES_256_CBC_SHA', 'AES256-SHA', 'TLSv1', 'RSA', 'RSA', 'AES', 256, 'SHA1', 1],
  ['0x0084', 'TLS_RSA_WITH_CAMELLIA_256_CBC_SHA', 'CAMELLIA256-SHA', 'TLSv1', 'RSA', 'RSA', 'Camellia', 256, 'SHA1', 1],
  ['0x002f', 'TLS_RSA_WITH_AES_128_CBC_SHA', 'AES128-SHA', 'TLSv1', 'RSA', 'RSA', 'AES', 128, 'SHA1', 1],
  ['0x0041', 'TLS_RSA_WITH_CAMELLIA_128_CBC_SHA', 'CAMELLIA128-SHA', 'TLSv1', 'RSA', 'RSA', 'Camellia', 128, 'SHA1', 1],
  ['0xc006', 'TLS_ECDHE_ECDSA_WITH_NULL_SHA', 'ECDHE-ECDSA-NULL-SHA', 'TLSv1', 'ECDH', 'ECDSA', 'None', 0, 'SHA1', 0],
  ['0xc010', 'TLS_ECDHE_RSA_WITH_NULL_SHA', 'ECDHE-RSA-NULL-SHA', 'TLSv1', 'ECDH', 'RSA', 'None', 0, 'SHA1', 0],
  ['0xc015', 'TLS_ECDH_anon_WITH_NULL_SHA', 'AECDH-NULL-SHA', 'TLSv1', 'ECDH', 'None', 'None', 0, 'SHA1', 0],
  ['0x003b', 'TLS_RSA_WITH_NULL_SHA256', 'NULL-SHA256', 'TLSv1.2', 'RSA', 'RSA', 'None', 0, 'SHA256', 0],
  ['0x0002', 'TLS_RSA_WITH_NULL_SHA', 'NULL-SHA', 'TLSv1', 'RSA', 'RSA', 'None', 0, 'SHA1', 0],
  ['0x0001', 'TLS_RSA_WITH_NULL_MD5', 'NULL-MD5', 'TLSv1', 'RSA', 'RSA', 'None', 0, 'MD5', 0],
];
export const CIPHER_SUITES: readonly CipherSuite[] = ROWS.map(
  ([id, iana, openssl, minVersion, kx, au, enc, bits, mac, high]) => ({
    id,
    iana,
    openssl,
    minVersion,
    kx,
    au,
    enc,
    bits,
    mac,
    high: high === 1,
  }),
);

const byName = new Map<string, CipherSuite>();
for (const s of CIPHER_SUITES) {
  byName.set(s.openssl.toUpperCase(), s);
  byName.set(s.iana.toUpperCase(), s);
}

/** Look a suite up by its OpenSSL or IANA name (case-insensitive). */
export function findSuite(name: string): CipherSuite | undefined {
  return byName.get(name.trim().toUpperCase());
}

export function isAead(s: CipherSuite): boolean {
  return s.mac === 'AEAD';
}

/** The suites that can be tried at a given version. */
export function suitesFor(version: TlsVersion): CipherSuite[] {
  if (version === 'TLSv1.3') return CIPHER_SUITES.filter((s) => s.minVersion === 'TLSv1.3');
  const order = TLS_VERSIONS.indexOf(version);
  return CIPHER_SUITES.filter((s) => s.minVersion !== 'TLSv1.3' && TLS_VERSIONS.indexOf(s.minVersion) <= order);
}

/** Key bits for a suite Node reports by name (OpenSSL or IANA), falling back to the name's digits. */
export function suiteBits(name: string): number | undefined {
  const s = findSuite(name);
  if (s) return s.bits;
  if (/CHACHA20/i.test(name)) return 256;
  const m = /(?:AES|CAMELLIA|ARIA)[-_]?(128|256)/i.exec(name);
  return m ? Number(m[1]) : undefined;
}
