/**
 * The pooling settings, PgBouncer's names and defaults (doc/config.md of PgBouncer 1.25), durations in milliseconds.
 * `relay` is the gateway's 1:1 relay (a fresh backend connection per client, authenticated by the backend), kept as
 * the default so that a configuration without pool_mode behaves as before.
 */
import type { GatewayConfig } from '../../config/load.js';

export const POOL_MODES = ['relay', 'session', 'transaction'] as const;
export type PoolMode = (typeof POOL_MODES)[number];

/** The pooling keys of the gateway's configuration (declared once, in GatewayConfig). */
export type PoolSettings = Pick<
  GatewayConfig,
  | 'pool_mode'
  | 'default_pool_size'
  | 'min_pool_size'
  | 'reserve_pool_size'
  | 'reserve_pool_timeout'
  | 'max_db_connections'
  | 'server_idle_timeout'
  | 'server_lifetime'
  | 'server_reset_query'
  | 'server_reset_query_always'
  | 'server_check_query'
  | 'server_check_delay'
  | 'query_wait_timeout'
  | 'max_prepared_statements'
>;

export const DEFAULT_POOL_SETTINGS: PoolSettings = Object.freeze({
  pool_mode: 'relay',
  default_pool_size: 20,
  min_pool_size: 0,
  reserve_pool_size: 0,
  reserve_pool_timeout: 5000,
  max_db_connections: 0,
  server_idle_timeout: 600_000,
  server_lifetime: 3_600_000,
  server_reset_query: 'DISCARD ALL',
  server_reset_query_always: false,
  server_check_query: '<empty>',
  server_check_delay: 30_000,
  query_wait_timeout: 120_000,
  max_prepared_statements: 200,
});

/** The pool settings out of a gateway configuration (which has the same keys), the others left out. */
export function poolSettingsFrom(cfg: Partial<PoolSettings>): PoolSettings {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DEFAULT_POOL_SETTINGS) as (keyof PoolSettings)[])
    out[k] = cfg[k] ?? DEFAULT_POOL_SETTINGS[k];
  return Object.freeze(out as unknown as PoolSettings);
}
