/**
 * pgtls/client — libpq's TLS connection semantics for Node.js.
 *
 *   const plan = resolve('host=db.example.com sslmode=verify-full');   // what libpq would do, frozen
 *   const { socket, facts } = await connect(plan);                     // negotiated TLS (or plain) socket
 *
 * Adapters for real drivers: `pgtls/client/pg` (node-postgres `stream`) and `pgtls/client/postgres` (postgres.js
 * `socket`).
 */
export { ConnectionAttempts, connect } from './connect.js';
export type { ConnectionFacts, Method, Negotiated, TlsFacts } from './connect.js';
export { isUri, parseConnectionString, parseKeywordValue, parseUri, uriDecode } from './conninfo.js';
export { ClientError, ClientErrorCode } from './errors.js';
export type { AttemptFailure } from './errors.js';
export { PARAMETERS } from './options.js';
export type { SslCertMode, SslMode, SslNegotiation, TlsVersion, ValueSource } from './options.js';
export { DEFAULT_SOCKET_DIR, redactedParams, resolve } from './resolve.js';
export type { ConnectionInput, ConnectionPlan, Environment, HostTarget, ResolveOptions, SslPlan } from './resolve.js';
export { PgtlsSocket } from './stream.js';
export { certModeRefusal, formatServerError, targetRejection } from './login-rules.js';
export { loadTlsMaterial } from './tls-files.js';
export type { MaterialResult, TlsMaterial } from './tls-files.js';
export { verifyHostName } from '../pki/hostname.js';
