/**
 * Names for certificate verification errors: Node's codes for OpenSSL's verify error numbers, and OpenSSL's texts
 * for Node's codes (X509_verify_cert_error_string). The reasons libpq does not show, kept for the log.
 */

/** OpenSSL's verify error numbers → Node's codes, so that the native path's reasons read as Node's. */
export const VERIFY_CODES: Readonly<Record<number, string>> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  3: 'UNABLE_TO_GET_CRL',
  7: 'CERT_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  12: 'CRL_HAS_EXPIRED',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  23: 'CERT_REVOKED',
  24: 'INVALID_CA',
  25: 'PATH_LENGTH_EXCEEDED',
  26: 'INVALID_PURPOSE',
};

/** Node's verify error code → OpenSSL's text (X509_verify_cert_error_string), the reason libpq does not show. */
export function describeVerifyError(code: string): string {
  const texts: Record<string, string> = {
    CERT_HAS_EXPIRED: 'certificate has expired',
    CERT_NOT_YET_VALID: 'certificate is not yet valid',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
    SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in certificate chain',
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unable to get local issuer certificate',
    UNABLE_TO_GET_ISSUER_CERT: 'unable to get issuer certificate',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unable to verify the first certificate',
    CERT_REVOKED: 'certificate revoked',
    UNABLE_TO_GET_CRL: 'unable to get certificate CRL',
    CRL_HAS_EXPIRED: 'CRL has expired',
    CERT_SIGNATURE_FAILURE: 'certificate signature failure',
    INVALID_CA: 'invalid CA certificate',
    INVALID_PURPOSE: 'unsupported certificate purpose',
    PATH_LENGTH_EXCEEDED: 'path length constraint exceeded',
  };
  return texts[code] ? `${texts[code]} (${code})` : code;
}
