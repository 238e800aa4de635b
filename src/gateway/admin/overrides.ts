/**
 * Runtime SETs from the console applied to the configuration: the gateway builds each new connection's configuration
 * (and, for ssl_min_protocol_version, its TLS material) from withOverrides(config, overrides). Existing sessions keep
 * what they started with; RELOAD and restart drop the overrides.
 */
import type { GatewayConfig } from '../../config/load.js';
import { TLS_VERSIONS, type TlsVersionName, parseValue } from '../../config/schema.js';
import type { RuntimeOverride, RuntimeSetting } from './runtime-view.js';

export function withOverrides(
  config: GatewayConfig,
  overrides: ReadonlyMap<RuntimeSetting, RuntimeOverride>,
): GatewayConfig {
  if (overrides.size === 0) return config;
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = { ...config.sources };
  for (const [key, o] of overrides) {
    const parsed = parseValue(key, o.value);
    // The console validated the value with the same parser; a value that no longer parses is ignored.
    if (!parsed.ok) continue;
    values[key] = parsed.value;
    sources[key] = `SET at ${o.since.toISOString()}`;
  }
  return Object.freeze({ ...config, ...values, sources: Object.freeze(sources) }) as GatewayConfig;
}

/**
 * PostgreSQL refuses a protocol range whose minimum is above its maximum ("could not set SSL protocol version
 * range"); SET refuses it before it reaches a handshake. Returns the message, or undefined when the range is fine.
 */
export function rangeError(min: TlsVersionName, max: TlsVersionName | ''): string | undefined {
  if (max === '' || TLS_VERSIONS.indexOf(min) <= TLS_VERSIONS.indexOf(max)) return undefined;
  return `ssl_min_protocol_version "${min}" is higher than ssl_max_protocol_version "${max}"`;
}
