/**
 * `pgtls doctor "CONNINFO"`: connect exactly as libpq would (pgtls/client: resolve() → ConnectionAttempts, then the
 * authentication exchange), and when it fails, find out why by looking at the same server step by step — DNS, TCP,
 * SSLRequest, TLS handshake, chain, host name, client certificate, authentication — and name the cause and the fix.
 *
 * The libpq-exact attempt decides *whether* the connection works (and gives libpq's message); the step-by-step look
 * (the doctor's own wire module, pki/ for certificates) decides *why*. Library code: returns a report, never prints.
 */
import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConnectionAttempts, type Negotiated } from '../client/connect.js';
import { ClientError } from '../client/errors.js';
import type { AttemptFailure } from '../client/errors.js';
import { certModeRefusal } from '../client/login-rules.js';
import { type ConnectionPlan, type Environment, resolve } from '../client/resolve.js';
import { loadTlsMaterial } from '../client/tls-files.js';
import { verifyHostName } from '../pki/hostname.js';
import { splitPem, toArrayBuffer } from '../pki/pem.js';
import { x509 } from '../pki/x509.js';
import { explainedFailure, skippedAttempts } from './attempts.js';
import { type AuthOutcome, authenticate } from './auth.js';
import {
  type ChainReport,
  type StoreVerdict,
  type TrustStore,
  inspectChain,
  toX509,
  verifyAgainstStore,
} from './chain.js';
import { type Diagnosis, explain } from './explain.js';
import { type Endpoint, type Negotiated as WireNegotiated, closeTls, negotiate } from './wire.js';

export type { Diagnosis } from './explain.js';

export const STAGES = [
  'parameters',
  'dns',
  'tcp',
  'sslrequest',
  'tls',
  'chain',
  'hostname',
  'client-certificate',
  'authentication',
] as const;
export type Stage = (typeof STAGES)[number];

export interface DoctorStep {
  readonly stage: Stage;
  readonly status: 'ok' | 'warn' | 'fail' | 'skip';
  readonly summary: string;
  readonly details?: readonly string[];
}

export interface Parameter {
  readonly name: string;
  readonly value: string;
  readonly source: string;
}

export interface DoctorReport {
  /** The connection would succeed. */
  readonly ok: boolean;
  /** It would succeed and the server's identity is verified (sslmode=verify-full or sslrootcert=system). */
  readonly verified: boolean;
  readonly parameters: readonly Parameter[];
  readonly steps: readonly DoctorStep[];
  readonly diagnosis?: Diagnosis | undefined;
  /** What psql would print (libpq's messages for every attempt), when the connection fails. */
  readonly libpqMessage?: string | undefined;
  /**
   * The attempt the diagnosis explains, with libpq's words for it: libpq's last attempt that reached a server (the
   * earlier ones, e.g. a refused ::1 before 127.0.0.1, are listed in the diagnosis's evidence).
   */
  readonly explained?:
    | { readonly host: string; readonly address?: string; readonly port: string; readonly libpqMessage: string }
    | undefined;
  readonly warnings: readonly string[];
  readonly connection?:
    | {
        readonly host: string;
        readonly address: string;
        readonly port: number;
        readonly encryption: 'none' | 'ssl' | 'direct';
        readonly protocol?: string | null | undefined;
        readonly cipher?: string | undefined;
        readonly authentication?: string | undefined;
      }
    | undefined;
}

export interface DoctorOptions {
  readonly env?: Environment;
  readonly homedir?: string;
  /** Per-step timeout; default: connect_timeout, or 10 s. */
  readonly timeoutMs?: number;
}

/** Parameters worth showing, in the order a reader checks them. */
const SHOWN = [
  'host',
  'hostaddr',
  'port',
  'user',
  'dbname',
  'sslmode',
  'sslnegotiation',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslcrl',
  'sslcrldir',
  'sslcertmode',
  'sslsni',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'channel_binding',
  'require_auth',
  'password',
] as const;

/** What the doctor saw when it walked the steps itself (for the failing host). */
export interface Observed {
  readonly endpoint: Endpoint;
  readonly host: string;
  readonly addresses?: readonly string[];
  readonly dnsError?: string;
  readonly wire?: WireNegotiated;
  readonly chain?: ChainReport;
  readonly chainDer?: readonly Buffer[];
  readonly store?: TrustStore;
  readonly storeVerdict?: StoreVerdict;
  readonly hostname?: ReturnType<typeof verifyHostName>;
}

function parameters(plan: ConnectionPlan): Parameter[] {
  const out: Parameter[] = [];
  for (const name of SHOWN) {
    const value = plan.params[name];
    if (value === undefined || value === '') continue;
    out.push({ name, value: name === 'password' ? '********' : value, source: plan.sources[name] ?? 'default' });
  }
  return out;
}

function trustStoreOf(plan: ConnectionPlan): TrustStore | undefined {
  const m = loadTlsMaterial(plan);
  if (!m.ok || !m.value.ca) return undefined;
  const pem = m.value.ca.join('\n');
  const certificates = splitPem(pem)
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => toX509(b.der));
  const label = plan.ssl.rootCert || '~/.postgresql/root.crt';
  const crls = m.value.crl
    ? splitPem(m.value.crl.join('\n'))
        .filter((b) => b.label === 'X509 CRL')
        .map((b) => new x509.X509Crl(toArrayBuffer(b.der)))
    : undefined;
  return { label, path: m.value.rootSource ?? label, exists: true, certificates, ...(crls ? { crls } : {}) };
}

/** Walk the steps ourselves against one host, with the plan's TLS settings (to explain a failure). */
async function observe(
  plan: ConnectionPlan,
  failure: AttemptFailure | undefined,
  timeoutMs: number,
): Promise<Observed> {
  const target = plan.hosts.find((h) => h.host === failure?.host) ?? plan.hosts[0];
  const host = target?.host ?? '';
  const port = Number(failure?.port || target?.port || 5432) || 5432;
  let address = failure?.address ?? target?.hostaddr ?? '';
  const obs: { -readonly [K in keyof Observed]: Observed[K] } = { endpoint: { host: address || host, port }, host };
  if (!target || target.kind === 'socket') return obs;
  if (target.kind === 'name') {
    // All the name's addresses are shown; the one looked at is the failing attempt's (libpq may have passed others).
    try {
      const addrs = await lookup(host, { all: true, verbatim: true });
      obs.addresses = addrs.map((a) => a.address);
      if (!address) address = addrs[0]?.address ?? host;
    } catch (err) {
      if (!address) {
        obs.dnsError = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
        return obs;
      }
      obs.addresses = [address];
    }
  } else if (address) obs.addresses = [address];
  obs.endpoint = { host: address || host, port };
  const sni = plan.ssl.sni && host && isIP(host) === 0 ? host : undefined;
  const wire = await negotiate(
    obs.endpoint,
    {
      servername: sni,
      direct: plan.ssl.negotiation === 'direct',
      capture: true,
      minVersion: (plan.ssl.minVersion || 'TLSv1.2') as 'TLSv1.2',
      maxVersion: (plan.ssl.maxVersion || 'TLSv1.3') as 'TLSv1.3',
    },
    timeoutMs,
  );
  obs.wire = wire;
  if (wire.stage === 'done') {
    closeTls(wire.socket);
    obs.chainDer = wire.peerCertificates;
    obs.chain = await inspectChain(wire.peerCertificates);
    const store = trustStoreOf(plan);
    if (store) {
      obs.store = store;
      obs.storeVerdict = await verifyAgainstStore(wire.peerCertificates, store);
    }
    if (wire.peerCertificates[0] && host) obs.hostname = verifyHostName(wire.peerCertificates[0], host);
  }
  return obs;
}

export async function doctor(input: string, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const env = opts.env ?? process.env;
  const warnings: string[] = [];
  let plan: ConnectionPlan;
  try {
    plan = resolve(input, env, opts.homedir === undefined ? {} : { homedir: opts.homedir });
  } catch (err) {
    const message = err instanceof ClientError ? err.libpqMessage.trimEnd() : (err as Error).message;
    const diagnosis = await explain({ message, stage: 'parameters' });
    return {
      ok: false,
      verified: false,
      parameters: [],
      steps: [{ stage: 'parameters', status: 'fail', summary: message }],
      diagnosis,
      libpqMessage: message,
      warnings,
    };
  }
  warnings.push(...plan.warnings);
  const timeoutMs = opts.timeoutMs ?? (plan.connectTimeoutSeconds > 0 ? plan.connectTimeoutSeconds * 1000 : 10_000);
  const params = parameters(plan);
  const paramStep: DoctorStep = {
    stage: 'parameters',
    status: 'ok',
    summary: `sslmode=${plan.ssl.mode}${plan.ssl.modeExplicit ? '' : ' (libpq default)'}, ${plan.hosts.length} host(s), user ${plan.user}, database ${plan.database}`,
    details: plan.steps,
  };

  // 1. The libpq-exact connection, with authentication.
  // libpq waits forever without connect_timeout; the doctor must answer, so it bounds each wait (default 10 s).
  const bounded: ConnectionPlan =
    plan.connectTimeoutSeconds > 0 ? plan : { ...plan, connectTimeoutSeconds: Math.ceil(timeoutMs / 1000) };
  const attempts = new ConnectionAttempts(bounded);
  let success: { neg: Negotiated; auth: AuthOutcome } | undefined;
  for (let guard = 0; guard < 64; guard++) {
    let neg: Negotiated;
    try {
      neg = await attempts.next();
    } catch (err) {
      if (err instanceof ClientError) break;
      throw err;
    }
    const target = plan.hosts.find((h) => h.host === neg.facts.host);
    const auth = await authenticate(neg.socket, {
      user: plan.user,
      database: plan.database,
      password: target?.password ?? plan.params.password,
      channelBinding: plan.params.channel_binding,
      requireAuth: plan.params.require_auth,
      timeoutMs,
    });
    // sslcertmode=require is checked at AuthenticationOk, as libpq does (fe-auth.c), without fallback.
    const certMode = auth.ok ? certModeRefusal(plan.ssl.certMode, neg.facts.tls) : undefined;
    if (auth.ok && !certMode) {
      success = { neg, auth };
      break;
    }
    // After AuthenticationOk (e.g. "database … does not exist") libpq gives up at once; before it, a refused login
    // makes libpq try the next method/address/host (prefer → plaintext, allow → TLS, …).
    if (certMode || (!auth.ok && auth.afterAuthOk)) {
      attempts.abort(certMode ?? (auth.ok ? '' : auth.message));
      break;
    }
    attempts.fail(auth.ok ? '' : auth.message, auth.ok ? undefined : auth.error?.C);
  }

  if (success) {
    const f = success.neg.facts;
    const tls = f.tls;
    const steps: DoctorStep[] = [paramStep];
    steps.push({ stage: 'dns', status: 'ok', summary: f.address ? `${f.host} → ${f.address}` : f.host });
    steps.push({ stage: 'tcp', status: 'ok', summary: `connected to ${f.address || f.host}:${f.port}` });
    if (f.method === 'direct') steps.push({ stage: 'sslrequest', status: 'ok', summary: 'direct TLS (no SSLRequest)' });
    else if (f.sslResponse) {
      steps.push({
        stage: 'sslrequest',
        status: f.sslResponse === 'S' ? 'ok' : 'warn',
        summary: f.sslResponse === 'S' ? "server answered 'S'" : "server answered 'N': continuing without encryption",
      });
    } else
      steps.push({ stage: 'sslrequest', status: 'warn', summary: `no SSLRequest sent (sslmode=${plan.ssl.mode})` });
    if (tls) {
      steps.push({ stage: 'tls', status: 'ok', summary: `${tls.protocol ?? ''} ${tls.cipher}`.trim() });
      const chain = await inspectChain(tls.peerChain.map((c) => c.raw));
      steps.push({
        stage: 'chain',
        status: tls.verified === 'none' ? 'warn' : 'ok',
        summary:
          tls.verified === 'none'
            ? `not verified (sslmode=${plan.ssl.mode}): ${chain.certificates[0]?.subject ?? 'no certificate'}`
            : `verified against ${tls.rootSource ?? plan.ssl.rootCert}: ${chain.certificates.map((c) => c.subject).join(' ← ')}`,
      });
      const leaf = tls.peerChain[0];
      const hn = leaf && f.host ? verifyHostName(leaf.raw, f.host) : undefined;
      steps.push({
        stage: 'hostname',
        status: tls.verified === 'chain+host' ? 'ok' : 'warn',
        summary:
          tls.verified === 'chain+host'
            ? `"${f.host}" matches "${hn?.ok ? hn.matched : ''}"`
            : `not checked (sslmode=${plan.ssl.mode})${hn ? (hn.ok ? `; it would match "${hn.matched}"` : `; it would fail: ${hn.message}`) : ''}`,
      });
      steps.push({
        stage: 'client-certificate',
        status: 'ok',
        summary: tls.clientCertificate ? `sent ${tls.clientCertificate}` : 'none sent (none needed)',
      });
    } else {
      steps.push({ stage: 'tls', status: 'warn', summary: 'not encrypted' });
    }
    steps.push({
      stage: 'authentication',
      status: 'ok',
      summary: `accepted (${success.auth.ok ? success.auth.method : ''})`,
    });
    const verified = tls?.verified === 'chain+host';
    if (!tls) {
      warnings.push(
        `the connection is not encrypted (sslmode=${plan.ssl.mode}): use sslmode=verify-full with the server's root CA in sslrootcert`,
      );
    } else if (!verified) {
      warnings.push(
        `the server's identity is not verified (sslmode=${plan.ssl.mode}): anyone able to intercept the connection could impersonate it; use sslmode=verify-full with sslrootcert`,
      );
    }
    for (const fb of f.fallbacks) warnings.push(`libpq fell back after: ${fb.message.split('\n')[0]}`);
    return {
      ok: true,
      verified,
      parameters: params,
      steps,
      warnings,
      connection: {
        host: f.host,
        address: f.address,
        port: f.port,
        encryption: tls ? (f.method === 'direct' ? 'direct' : 'ssl') : 'none',
        protocol: tls?.protocol,
        cipher: tls?.cipher,
        authentication: success.auth.ok ? success.auth.method : undefined,
      },
    };
  }

  // 2. It failed: look at the same server ourselves, then explain.
  const failures = attempts.failures;
  const libpqMessage = failures.map((a) => `${a.prefix}${a.message}`).join('\n');
  const primary = explainedFailure(failures);
  const observed = await observe(plan, primary, timeoutMs);
  const explained = await explain({
    message: primary?.message ?? 'connection failed',
    ...(primary?.reason ? { reason: primary.reason } : {}),
    ...(primary ? { method: primary.method } : {}),
    failures,
    plan,
    observed,
    timeoutMs,
  });
  // Addresses libpq passed on its way (a refused ::1 before 127.0.0.1) are evidence, not the cause.
  const skipped = primary ? skippedAttempts(failures, primary) : [];
  const diagnosis: Diagnosis = skipped.length
    ? { ...explained, evidence: [...skipped, ...(explained.evidence ?? [])] }
    : explained;
  const steps = stepsFromObserved(paramStep, plan, observed, diagnosis);
  return {
    ok: false,
    verified: false,
    parameters: params,
    steps,
    diagnosis,
    libpqMessage,
    ...(primary
      ? {
          explained: {
            host: primary.host,
            ...(primary.address ? { address: primary.address } : {}),
            port: primary.port,
            libpqMessage: `${primary.prefix}${primary.message}`,
          },
        }
      : {}),
    warnings,
  };
}

/** Steps for a failed connection: what we saw, up to the failing stage (marked), the rest skipped. */
function stepsFromObserved(paramStep: DoctorStep, plan: ConnectionPlan, o: Observed, d: Diagnosis): DoctorStep[] {
  const seen: Partial<Record<Stage, DoctorStep>> = { parameters: paramStep };
  if (o.dnsError) seen.dns = { stage: 'dns', status: 'fail', summary: `${o.host}: ${o.dnsError}` };
  else if (o.addresses) seen.dns = { stage: 'dns', status: 'ok', summary: `${o.host} → ${o.addresses.join(', ')}` };
  const w = o.wire;
  if (w) {
    if (w.stage === 'tcp') seen.tcp = { stage: 'tcp', status: 'fail', summary: `${w.code}: ${w.message}` };
    else seen.tcp = { stage: 'tcp', status: 'ok', summary: `connected to ${o.endpoint.host}:${o.endpoint.port}` };
    if (w.stage === 'sslrequest') {
      seen.sslrequest = { stage: 'sslrequest', status: 'warn', summary: `server answered '${w.answer.answer}'` };
    } else if (w.stage === 'tls' || w.stage === 'done') {
      seen.sslrequest = {
        stage: 'sslrequest',
        status: 'ok',
        summary: plan.ssl.negotiation === 'direct' ? 'direct TLS' : "server answered 'S'",
      };
    }
    if (w.stage === 'tls') {
      seen.tls = { stage: 'tls', status: 'fail', summary: w.alert ? `server sent alert "${w.alert}"` : w.message };
    } else if (w.stage === 'done') {
      seen.tls = {
        stage: 'tls',
        status: 'ok',
        summary: `${w.protocol} ${w.cipher.standardName}${w.certificateRequested ? ', server requests a client certificate' : ''}`,
      };
    }
  }
  if (o.chain) {
    const subjects = o.chain.certificates.map((c) => c.subject).join(' ← ');
    const v = o.storeVerdict;
    seen.chain = {
      stage: 'chain',
      status: v ? (v.verified ? 'ok' : 'fail') : 'warn',
      summary: v
        ? `${v.verified ? 'verifies' : `does not verify (${v.error?.reason ?? ''})`}: ${subjects}`
        : `not verified: ${subjects}`,
      details: o.chain.findings.filter((f) => f.level !== 'info').map((f) => f.message),
    };
  }
  if (o.hostname) {
    seen.hostname = {
      stage: 'hostname',
      status: o.hostname.ok ? 'ok' : plan.ssl.mode === 'verify-full' ? 'fail' : 'warn',
      summary: o.hostname.ok ? `"${o.host}" matches "${o.hostname.matched}"` : o.hostname.message,
    };
  }
  if (o.wire?.stage === 'done') {
    const has = plan.ssl.cert !== '' && existsSync(plan.ssl.cert);
    seen['client-certificate'] = {
      stage: 'client-certificate',
      status: 'ok',
      summary: has ? `${plan.ssl.cert} (sent when the server asks)` : `none ("${plan.ssl.cert}" does not exist)`,
    };
  }
  const failIndex = STAGES.indexOf(d.stage);
  const steps: DoctorStep[] = [];
  for (const [i, stage] of STAGES.entries()) {
    if (i < failIndex) {
      const s = seen[stage];
      if (s) steps.push(s.status === 'fail' ? { ...s, status: 'warn' } : s);
    } else if (i === failIndex) {
      steps.push({
        stage,
        status: 'fail',
        summary: d.cause,
        ...(seen[stage]?.details ? { details: seen[stage]!.details! } : {}),
      });
    } else steps.push({ stage, status: 'skip', summary: 'not reached' });
  }
  return steps;
}
