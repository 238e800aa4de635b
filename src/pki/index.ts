/**
 * The pki/ library in one import, for the gateway (zero-config CA), the client and the doctor. Every module can also
 * be imported on its own; none of them opens a socket.
 *
 * - generate: create CAs, leaves, cross-certificates and CRLs (@peculiar/x509 on WebCrypto)
 * - pem: read PEM/DER certificates, CRLs and keys with errors that name the file
 * - files: all-or-nothing outputs, keys 0600, no silent overwrite
 * - names: OpenSSL's canonical name comparison and subject hash (`<hash>.0`, `<hash>.r0`)
 * - facts: decoded extensions and OpenSSL's issuer test
 * - keys: passphrases, key/certificate matching, key forms, loading a CA to sign with
 * - inspect: certificate summaries and chain findings
 * - verify: OpenSSL-equivalent path building and verification, with OpenSSL's reasons
 * - crl, ca-database: revocation bookkeeping, CRL files and hashed CRL directories
 * - roots: roots from Node's and the system's trust stores (Azure's three)
 * - hostname: libpq's host-name rules (owned by the client)
 */
export * from './ca-database.js';
export * from './crl.js';
export * from './facts.js';
export * from './files.js';
export * from './generate.js';
export * from './inspect.js';
export * from './keys.js';
export * from './names.js';
export * from './pem.js';
export * from './roots.js';
export * from './verify.js';
export { x509 } from './x509.js';
