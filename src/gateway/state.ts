/**
 * The state a gateway serves with — configuration, hba, ident, TLS material (and per-host SNI material), secrets,
 * upstream — built complete from the configuration, or not at all (a reload swaps it only when every part loaded),
 * and the facts an operator sees about it (`serve --check`, warnings at start and reload).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type AuthFile, readAuthFile } from '../config/auth-file.js';
import { type ConfigInput, type GatewayConfig, loadConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import { type HbaLine, parseHba, readHbaFile } from '../hba/hba.js';
import { type IdentLine, readIdentFile } from '../hba/ident.js';
import { type TrustedRange, parseTrustedList } from '../hba/proxy-trusted.js';
import { hbaError, tokenizeAuthText } from '../hba/tokenize.js';
import { type TlsMaterial, loadTlsMaterial } from '../tls/context.js';
import { assertHandshakePossible } from '../tls/self-check.js';
import { type SniSelector, loadSniSelector } from '../tls/sni.js';
import { ensureLocalCa } from './local-ca.js';
import { type Route, readRoutesFile } from './routes.js';
import { AuthQuery, type SecretSource, secretSource } from './secrets.js';
import {
  type UpstreamTarget,
  connectUpstream,
  parseUpstreamUrl,
  upstreamOptions,
  upstreamSummary,
} from './upstream.js';

export interface State {
  readonly config: GatewayConfig;
  readonly hba: readonly HbaLine[];
  readonly ident: readonly IdentLine[];
  readonly material: TlsMaterial | undefined;
  /** ssl_sni = on with pg_hosts.conf entries; undefined otherwise (material serves everyone). */
  readonly sni: SniSelector | undefined;
  readonly proxyTrusted: readonly TrustedRange[];
  readonly upstream: UpstreamTarget;
  /** auth_file / auth_query, when the gateway authenticates password-method lines itself. */
  readonly secrets: SecretSource | undefined;
  readonly authFile: AuthFile | undefined;
  /** routes_file: other upstreams by SNI, database or user@server. */
  readonly routes: readonly Route[];
}

/**
 * The SCRAM mock-salt secret, kept in data_directory so that repeated probes for an unknown user see the same salt
 * across restarts (PostgreSQL keeps its mock nonce in pg_control); in memory when the directory is not writable.
 */
export function loadMockSecret(dataDirectory: string): Buffer {
  const file = join(resolve(dataDirectory), 'scram-mock-secret');
  try {
    const b = readFileSync(file);
    if (b.length >= 32) return b;
  } catch {
    // not there yet
  }
  const fresh = randomBytes(32);
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, fresh, { mode: 0o600, flag: 'wx' });
  } catch {
    // read-only or raced: an in-memory secret still hides unknown users within this run
  }
  return fresh;
}

/** hosts_file, or PostgreSQL 19's default name, pg_hosts.conf, beside the config file (else in data_directory). */
export function hostsFile(config: GatewayConfig): string {
  if (config.hosts_file !== '') return config.hosts_file;
  return join(config.config_file ? dirname(config.config_file) : resolve(config.data_directory), 'pg_hosts.conf');
}

export interface GatewayOptions {
  /** The upstream to use when the config has none (the embedded cluster). */
  readonly defaultUpstream?: { host: string; port: number };
  /**
   * The embedded cluster's superuser and the file with its password. With pooling and no auth_user of its own, the
   * gateway looks secrets up as this user (auth_query), authenticates clients itself and logs them in to the cluster
   * with SCRAM pass-through.
   */
  readonly embeddedSuperuser?: { readonly user: string; readonly passwordFile: string };
  /** Connection ids: first and step (a worker k of N numbers k, k+N, … so ids are unique across workers). */
  readonly connectionIds?: { readonly first: number; readonly step: number };
}

/**
 * Built-in rules when no hba_file is given: TLS for everyone (or anything, when TLS is not required). `trust` at the
 * gateway means the backend authenticates — true of the 1:1 relay only: a pool logs servers in itself, so when it
 * has secrets to check passwords against (auth_file, auth_user, the embedded cluster) the gateway authenticates
 * with `scram-sha-256`, and the client's SCRAM keys log it in to the backend.
 */
function builtinHba(config: GatewayConfig, gatewayAuth: boolean): HbaLine[] {
  const method = gatewayAuth ? 'scram-sha-256' : 'trust';
  // `local` matches only the optional Unix socket.
  const text = `local all all ${method}\n${config.require_secure_transport ? 'hostssl' : 'host'} all all all ${method}\n`;
  return parseHba(tokenizeAuthText(text, '(built-in pg_hba.conf)'));
}

/** The embedded cluster's superuser as auth_user, when pooling in front of it with no auth_user configured. */
function embeddedAuthUser(config: GatewayConfig, opts: GatewayOptions): { user: string; password: string } | undefined {
  const su = opts.embeddedSuperuser;
  if (!su || config.upstream !== '' || config.pool_mode === 'relay' || config.auth_user !== '') return undefined;
  try {
    return { user: su.user, password: readFileSync(su.passwordFile, 'utf8').trim() };
  } catch (cause) {
    throw new PgtlsError(
      'PGTLS_ERR_CONFIG_VALUE',
      `could not read the embedded cluster's password file "${su.passwordFile}"`,
      {
        cause,
        details: {
          file: su.passwordFile,
          hint: 'It is made when the embedded cluster is created; restore it or set auth_user.',
        },
      },
    );
  }
}

export async function buildState(input: ConfigInput, opts: GatewayOptions, previous?: State): Promise<State> {
  let config = loadConfig(input);
  if (config.ssl && (config.ssl_cert_file === '' || config.ssl_key_file === '')) {
    if (config.ssl_cert_file !== config.ssl_key_file && (config.ssl_cert_file === '' || config.ssl_key_file === '')) {
      throw new PgtlsError('PGTLS_ERR_CONFIG_CONFLICT', 'ssl_cert_file and ssl_key_file must be set together', {
        details: { hint: 'Set both, or neither to use the generated local CA under data_directory.' },
      });
    }
    const local = await ensureLocalCa(config.data_directory);
    config = Object.freeze({ ...config, ssl_cert_file: local.serverCert, ssl_key_file: local.serverKey });
  }
  const material = config.ssl
    ? loadTlsMaterial(config, {
        isReload: previous !== undefined,
        ...(previous?.material ? { previous: previous.material } : {}),
      })
    : undefined;
  if (material) await assertHandshakePossible(material);
  let sni: SniSelector | undefined;
  if (config.ssl && config.ssl_sni) {
    const selector = loadSniSelector(
      { ...config, hosts_file: hostsFile(config) },
      { isReload: previous !== undefined, ...(previous?.sni ? { previous: previous.sni } : {}) },
    );
    // A missing or empty pg_hosts.conf: the ssl_* files serve everyone, as in PostgreSQL 19.
    if (selector.source === 'ok') sni = selector;
  }
  const trusted = parseTrustedList(config.proxy_protocol_trusted);
  const proxyTrusted = trusted.ok ? trusted.ranges : [];
  const embeddedAuth = embeddedAuthUser(config, opts);
  const gatewayAuth =
    config.pool_mode !== 'relay' && (config.auth_file !== '' || config.auth_user !== '' || embeddedAuth !== undefined);
  const hba = config.hba_file ? readHbaFile(config.hba_file) : builtinHba(config, gatewayAuth);
  for (const line of hba) {
    if (line.method === 'peer' || (line.method === 'ident' && line.type === 'local')) {
      // PostgreSQL asks the kernel who the socket's peer is; the backend would see the gateway, not the client.
      throw hbaError(
        "peer authentication needs the client's operating-system user, which the gateway cannot pass on to the backend",
        line.file,
        line.line,
        'Use trust (the backend then authenticates), a password method or cert on this line.',
      );
    }
    if (line.clientcert !== 'off' && !material?.requestCert) {
      throw hbaError(
        'client certificates can only be checked if a root certificate store is available',
        line.file,
        line.line,
        'Make sure the configuration parameter "ssl_ca_file" is set.',
      );
    }
  }
  const ident = config.ident_file ? readIdentFile(config.ident_file) : [];
  const up = config.upstream ? parseUpstreamUrl(config.upstream) : opts.defaultUpstream;
  if (!up) {
    throw new PgtlsError('PGTLS_ERR_CONFIG_VALUE', 'no upstream configured', {
      details: { hint: "Set upstream = 'postgres://host:port', or run without one to start the embedded PostgreSQL." },
    });
  }
  const upstream: UpstreamTarget = {
    ...up,
    sslmode: config.upstream ? config.upstream_sslmode : 'disable',
    sslrootcert: config.upstream_sslrootcert,
    sslcert: config.upstream_sslcert,
    sslkey: config.upstream_sslkey,
    // The embedded cluster is reached over its Unix socket in plaintext: none of the hop's TLS or host settings apply.
    ...(config.upstream ? upstreamOptions(config) : {}),
  };
  const authFile = config.auth_file ? await readAuthFile(config.auth_file) : undefined;
  const authQuery =
    config.auth_user !== ''
      ? new AuthQuery(
          {
            authUser: config.auth_user,
            authQuery: config.auth_query,
            authDbname: config.auth_dbname,
            connect: () => connectUpstream(upstream),
          },
          authFile,
        )
      : embeddedAuth
        ? new AuthQuery(
            {
              authUser: embeddedAuth.user,
              authQuery: config.auth_query,
              authDbname: 'postgres',
              connect: () => connectUpstream(upstream),
              password: embeddedAuth.password,
            },
            authFile,
          )
        : undefined;
  const secrets = authFile || authQuery ? secretSource(authFile, authQuery) : undefined;
  const routes = config.routes_file ? readRoutesFile(config.routes_file, upstream) : [];
  return { config, hba, ident, material, sni, proxyTrusted, upstream, secrets, authFile, routes };
}

/** What a configuration check found: the facts an operator wants to see before starting (or after a reload). */
export interface CheckReport {
  readonly config: GatewayConfig;
  readonly hbaLines: number;
  readonly identLines: number;
  readonly certificate?: { subject: string; issuer: string; validTo: string; daysLeft: number; chainLength: number };
  readonly upstream: string;
  readonly warnings: readonly string[];
}

/** Certificates expiring within this many days are reported at start and at every reload. */
const EXPIRY_WARNING_DAYS = 30;

export function report(state: State): CheckReport {
  const warnings: string[] = [];
  let certificate: CheckReport['certificate'];
  if (state.material) {
    const leaf = state.material.leaf;
    const daysLeft = Math.floor((Date.parse(leaf.validTo) - Date.now()) / 86_400_000);
    certificate = {
      subject: leaf.subject.replace(/\n/g, ', '),
      issuer: leaf.issuer.replace(/\n/g, ', '),
      validTo: new Date(leaf.validTo).toISOString(),
      daysLeft,
      chainLength: state.material.chainLength,
    };
    if (daysLeft < 0) warnings.push(`the server certificate in ${state.config.ssl_cert_file} has expired`);
    else if (daysLeft <= EXPIRY_WARNING_DAYS) {
      warnings.push(`the server certificate in ${state.config.ssl_cert_file} expires in ${daysLeft} days`);
    }
  }
  if (!state.config.ssl) {
    warnings.push('ssl = off: every session is plaintext (development only)');
    // PostgreSQL logs the same warning for each such line when it loads pg_hba.conf.
    for (const l of state.hba.filter((h) => h.type === 'hostssl')) {
      warnings.push(
        `hostssl record cannot match because SSL is disabled (line ${l.line} of configuration file "${l.file}")`,
      );
    }
  } else if (!state.config.require_secure_transport)
    warnings.push('require_secure_transport = off: plaintext sessions are allowed');
  const u = state.upstream;
  return {
    config: state.config,
    hbaLines: state.hba.length,
    identLines: state.ident.length,
    ...(certificate ? { certificate } : {}),
    upstream: upstreamSummary(u),
    warnings,
  };
}

/**
 * Load and check everything a start would (config, hba, ident, certificate, key, CA, CRL) without listening:
 * `pgtls serve --check`. Throws the same errors a start would.
 */
export async function checkConfiguration(input: ConfigInput, opts: GatewayOptions = {}): Promise<CheckReport> {
  return report(await buildState(input, { defaultUpstream: { host: '(embedded)', port: 0 }, ...opts }));
}
