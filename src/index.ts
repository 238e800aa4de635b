/**
 * pgtls as a library. The gateway (`Gateway.start`), its configuration loader, and the shared PKI toolkit;
 * the libpq-exact client lives at `pgtls/client` (adapters at `pgtls/client/pg` and `pgtls/client/postgres`).
 */
export { type ConfigInput, type GatewayConfig, loadConfig } from './config/load.js';
export { PgtlsError, isPgtlsError } from './errors.js';
export { Gateway, type GatewayOptions } from './gateway/gateway.js';
export type { ConnectionRecord } from './gateway/runtime.js';
export * as pki from './pki/index.js';
