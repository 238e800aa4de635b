/**
 * Report-only policy: a stricter policy described by the report_* settings, evaluated against every session the real
 * policy let in, without refusing anyone. It answers "who breaks if I set ssl_min_protocol_version = TLSv1.3?" before
 * the switch is thrown: each would-be refusal is counted (metrics), kept in a bounded list (SHOW WOULD_REFUSE, the
 * status page) and logged by the gateway.
 */
import { createSecureContext, getCiphers } from 'node:tls';
import { TLS_VERSIONS, type TlsVersionName } from '../config/schema.js';
// The scanner's table of suites is pure data; it is the one list of OpenSSL suite names the package has.
import { CIPHER_SUITES } from '../doctor/cipher-suites.js';
import { PgtlsError } from '../errors.js';
import type { ConnectionRecord } from './runtime.js';

export const ERR_REPORT_POLICY = 'PGTLS_ERR_REPORT_POLICY';

/** The report_* settings. An empty / false value checks nothing. */
export interface ReportPolicySettings {
  /** report_min_protocol_version: '' or TLSv1 … TLSv1.3. */
  readonly report_min_protocol_version: TlsVersionName | '';
  /** report_ciphers: an OpenSSL cipher string (ssl_ciphers syntax) for TLS ≤ 1.2 sessions; '' = any. */
  readonly report_ciphers: string;
  /** report_tls13_ciphers: a colon-separated list of TLS 1.3 suites (ssl_tls13_ciphers syntax); '' = any. */
  readonly report_tls13_ciphers: string;
  readonly report_require_client_cert: boolean;
  readonly report_require_secure_transport: boolean;
}

export const REPORT_REASONS = ['plaintext', 'version', 'cipher', 'client_certificate'] as const;
export type ReportReasonCode = (typeof REPORT_REASONS)[number];

export interface ReportReason {
  readonly code: ReportReasonCode;
  /** One sentence naming the setting and the session's fact, e.g. "TLSv1.2 is below report_min_protocol_version TLSv1.3". */
  readonly message: string;
}

/** A policy compiled once (the cipher string expanded by OpenSSL) and then evaluated per session. */
export interface ReportPolicy {
  readonly settings: ReportPolicySettings;
  /** OpenSSL names of the TLS ≤ 1.2 suites report_ciphers allows; undefined = no cipher check. */
  readonly allowedCiphers?: ReadonlySet<string>;
  readonly allowedTls13?: ReadonlySet<string>;
}

/** The facts of a session the evaluator reads: the connection record as far as the startup phase filled it. */
export type SessionFacts = Pick<ConnectionRecord, 'negotiation' | 'tls_version' | 'cipher' | 'client_cert'>;

/**
 * Which TLS ≤ 1.2 suites an OpenSSL cipher string selects, by asking the OpenSSL Node is linked with. Node has no API
 * that lists a context's ciphers, but SSL_CTX_set_cipher_list() fails with "no cipher match" when a string selects
 * nothing. So each candidate suite is tested on its own: `<string>:!<every other candidate>:!PSK:!SRP` leaves either
 * that suite or nothing. This is exact for every syntax OpenSSL has (aliases, +, -, !, @STRENGTH, @SECLEVEL) because
 * OpenSSL itself evaluates the string — a hand-written expander would drift. The candidates are every suite Node
 * lists (tls.getCiphers(), upper-cased back to OpenSSL's spelling) and every suite of the scanner's table (ARIA, CCM,
 * CAMELLIA, DSS, anonymous and NULL suites Node does not list); PSK and SRP suites, which need a shared secret the
 * gateway never has, are removed by alias. Cost: one context per candidate, once per reload.
 */
export function expandCipherString(cipherString: string): Set<string> {
  const all = [
    ...new Set([
      ...getCiphers().map((c) => c.toUpperCase()),
      ...CIPHER_SUITES.filter((s) => s.minVersion !== 'TLSv1.3').map((s) => s.openssl),
    ]),
  ].filter((c) => !c.startsWith('TLS_'));
  try {
    createSecureContext({ ciphers: cipherString });
  } catch (cause) {
    throw new PgtlsError(ERR_REPORT_POLICY, 'could not set the cipher list (no valid ciphers available)', {
      cause,
      details: { setting: 'report_ciphers', value: cipherString },
    });
  }
  const out = new Set<string>();
  for (const suite of all) {
    const others = all.filter((o) => o !== suite).map((o) => `!${o}`);
    try {
      createSecureContext({ ciphers: [cipherString, ...others, '!PSK', '!SRP'].join(':') });
      out.add(suite);
    } catch {
      // "no cipher match": the string does not select this suite.
    }
  }
  return out;
}

export function compileReportPolicy(settings: ReportPolicySettings): ReportPolicy {
  const tls13 = settings.report_tls13_ciphers
    .split(':')
    .map((s) => s.trim())
    .filter(Boolean);
  return {
    settings,
    ...(settings.report_ciphers === '' ? {} : { allowedCiphers: expandCipherString(settings.report_ciphers) }),
    ...(tls13.length === 0 ? {} : { allowedTls13: new Set(tls13) }),
  };
}

/** True when any report_* setting asks for a check. */
export function reportPolicyActive(p: ReportPolicy): boolean {
  const s = p.settings;
  return (
    s.report_min_protocol_version !== '' ||
    p.allowedCiphers !== undefined ||
    p.allowedTls13 !== undefined ||
    s.report_require_client_cert ||
    s.report_require_secure_transport
  );
}

/** Why the stricter policy would refuse this session; empty when it would let it in. Pure. */
export function wouldRefuse(p: ReportPolicy, f: SessionFacts): ReportReason[] {
  const s = p.settings;
  const reasons: ReportReason[] = [];
  const tls = f.negotiation !== 'plaintext' && f.tls_version !== undefined;
  if (!tls) {
    if (s.report_require_secure_transport) {
      reasons.push({ code: 'plaintext', message: 'plaintext session and report_require_secure_transport is on' });
    }
    // The TLS checks say nothing more about a session without TLS, except the certificate it cannot have.
    if (s.report_require_client_cert) {
      reasons.push({
        code: 'client_certificate',
        message: 'no client certificate and report_require_client_cert is on',
      });
    }
    return reasons;
  }
  const version = f.tls_version as string;
  if (s.report_min_protocol_version !== '') {
    const have = TLS_VERSIONS.indexOf(version as TlsVersionName);
    const want = TLS_VERSIONS.indexOf(s.report_min_protocol_version);
    if (have < want) {
      reasons.push({
        code: 'version',
        message: `${version} is below report_min_protocol_version ${s.report_min_protocol_version}`,
      });
    }
  }
  const cipher = f.cipher ?? '';
  if (version === 'TLSv1.3') {
    if (p.allowedTls13 && !p.allowedTls13.has(cipher)) {
      reasons.push({ code: 'cipher', message: `${cipher} is not in report_tls13_ciphers` });
    }
  } else if (p.allowedCiphers && !p.allowedCiphers.has(cipher)) {
    reasons.push({ code: 'cipher', message: `${cipher} is not selected by report_ciphers` });
  }
  if (s.report_require_client_cert && f.client_cert === undefined) {
    reasons.push({ code: 'client_certificate', message: 'no client certificate and report_require_client_cert is on' });
  }
  return reasons;
}

/** One session the stricter policy would have refused: who it was and what it negotiated. */
export interface WouldRefuseEntry {
  readonly at: Date;
  readonly client: string;
  readonly client_port: number;
  readonly user: string;
  readonly database: string;
  readonly application_name: string;
  readonly negotiation: ConnectionRecord['negotiation'];
  readonly tls_version: string;
  readonly cipher: string;
  readonly client_cert: boolean;
  readonly reasons: readonly ReportReason[];
}

/**
 * The recent would-be refusals, in a ring buffer of fixed capacity (the oldest is overwritten), with counters by
 * reason since start. Memory is bounded whatever the connection rate.
 */
export class WouldRefuseRecorder {
  readonly #ring: (WouldRefuseEntry | undefined)[];
  #next = 0;
  #size = 0;
  #total = 0;
  readonly #byReason = new Map<ReportReasonCode, number>(REPORT_REASONS.map((r) => [r, 0]));

  constructor(readonly capacity = 1000) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new PgtlsError(ERR_REPORT_POLICY, `invalid would-refuse capacity ${capacity}`);
    }
    this.#ring = new Array(capacity);
  }

  /**
   * Evaluate a session that the real policy let in (call once, after the startup phase, when user and database are
   * known). Returns the reasons (empty: nothing recorded).
   */
  consider(p: ReportPolicy, record: ConnectionRecord, now = new Date()): ReportReason[] {
    const reasons = wouldRefuse(p, record);
    if (reasons.length === 0) return reasons;
    this.#total++;
    for (const r of reasons) this.#byReason.set(r.code, (this.#byReason.get(r.code) ?? 0) + 1);
    this.#ring[this.#next] = {
      at: now,
      client: record.client,
      client_port: record.client_port,
      user: record.user ?? '',
      database: record.database ?? '',
      application_name: record.application_name ?? '',
      negotiation: record.negotiation,
      tls_version: record.tls_version ?? '',
      cipher: record.cipher ?? '',
      client_cert: record.client_cert !== undefined,
      reasons,
    };
    this.#next = (this.#next + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
    return reasons;
  }

  /** Oldest first. */
  entries(): WouldRefuseEntry[] {
    const out: WouldRefuseEntry[] = [];
    const start = (this.#next - this.#size + this.capacity) % this.capacity;
    for (let i = 0; i < this.#size; i++) {
      const e = this.#ring[(start + i) % this.capacity];
      if (e) out.push(e);
    }
    return out;
  }

  get total(): number {
    return this.#total;
  }

  byReason(): Record<ReportReasonCode, number> {
    return Object.fromEntries(this.#byReason) as Record<ReportReasonCode, number>;
  }
}
