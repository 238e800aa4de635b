import { Socket } from 'node:net';
/**
 * `pgtls probe`: what `openssl s_client -starttls postgres` shows, made readable, plus what it does not: whether the
 * server also accepts plaintext and direct TLS, the chain exactly as sent and what is wrong with it, the host name
 * under libpq's rules, verification against each trust store, and which sslmode values would connect.
 */
import { homedir, userInfo } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { type HostNameResult, verifyHostName } from '../pki/hostname.js';
import { ALPN_POSTGRESQL } from '../protocol/index.js';
import {
  type ChainReport,
  type StoreContent,
  type TrustStore,
  chainEnd,
  inspectChain,
  loadTrustStore,
  systemStorePath,
  verifyAgainstStore,
} from './chain.js';
import { suiteBits, suitesFor } from './cipher-suites.js';
import { type SslmodeVerdict, type StartupVerdict, judgeStartup, sslmodeVerdicts, verifyReason } from './facts.js';
import { type Endpoint, type SslAnswer, closeTls, negotiate, openTcp, startupReply } from './wire.js';

const TLS13_SUITES = suitesFor('TLSv1.3')
  .map((x) => x.openssl)
  .join(':');

export interface ProbeOptions {
  /** sslrootcert to judge verify-ca/verify-full with (default: ~/.postgresql/root.crt, as libpq). */
  readonly rootcert?: string | undefined;
  readonly sni?: string | undefined;
  /** Use direct TLS (PostgreSQL 17+, sslnegotiation=direct) for the main handshake instead of SSLRequest. */
  readonly direct?: boolean;
  readonly user?: string | undefined;
  readonly database?: string | undefined;
  readonly timeoutMs?: number;
  /** HOME for ~/.postgresql (default: the process's). */
  readonly home?: string | undefined;
}

export interface TrustResult {
  readonly label: string;
  readonly path: string;
  readonly present: boolean;
  readonly certificates: number;
  readonly verified: boolean;
  /** OpenSSL's verify code as Node names it (UNABLE_TO_GET_ISSUER_CERT_LOCALLY, CERT_HAS_EXPIRED, …). */
  readonly error?: string | undefined;
  readonly reason: string;
  readonly content?: StoreContent | undefined;
}

export interface TlsFacts {
  readonly ok: boolean;
  readonly protocol?: string;
  readonly cipher?: string;
  readonly cipherIana?: string;
  readonly bits?: number | undefined;
  readonly group?: string | undefined;
  readonly alpn?: string | false;
  readonly certificateRequested?: boolean | undefined;
  readonly chainAsSent?: boolean;
  readonly error?: string;
  readonly code?: string;
  readonly alert?: string | undefined;
}

export interface ProbeResult {
  readonly host: string;
  readonly port: number;
  readonly via: 'sslrequest' | 'direct';
  readonly reachable: boolean;
  readonly tcpError?: string | undefined;
  readonly sslRequest?: SslAnswer | undefined;
  readonly plaintext?: StartupVerdict | undefined;
  readonly directTls?: { readonly supported: boolean; readonly detail: string } | undefined;
  readonly tls?: TlsFacts | undefined;
  /** When libpq's defaults fail: what a handshake with every version and suite OpenSSL has negotiated. */
  readonly legacyTls?: { readonly protocol: string; readonly cipher: string } | undefined;
  readonly tlsSession?: StartupVerdict | undefined;
  readonly chain?: ChainReport | undefined;
  readonly hostname?: HostNameResult | undefined;
  /**
   * The server sends only its own certificate, whose issuer is not a root: a store the user chose (--rootcert,
   * ~/.postgresql/root.crt) holds a root, and it is not that issuer. ssl_cert_file should hold the leaf, then the
   * intermediate. Without such a root the issuer is taken for a root this machine does not trust (`untrustedRoot`).
   */
  readonly missingIntermediate?: boolean | undefined;
  /**
   * No store here verifies the chain, and its top is a root none of them holds — sent by the server (self-signed) or
   * only named as the issuer of the last certificate sent. A private CA, usually: give its root with --rootcert.
   */
  readonly untrustedRoot?:
    | { readonly subject: string; readonly sent: boolean; readonly selfSignedLeaf: boolean; readonly leafOnly: boolean }
    | undefined;
  /** With missingIntermediate: the store and the roots in it that are not the leaf's issuer. */
  readonly missingIntermediateEvidence?: { readonly store: string; readonly roots: readonly string[] } | undefined;
  readonly trust: readonly TrustResult[];
  readonly sslmodes: readonly SslmodeVerdict[];
  readonly user: string;
  readonly database: string;
}

function groupText(g: { type: string; name?: string; size: number } | undefined): string | undefined {
  if (!g) return undefined;
  return g.name ? `${g.name} (${g.size} bits)` : `${g.type} ${g.size} bits`;
}

/** Verify the chain as sent against one store (pki/verify: OpenSSL's answer, offline). */
async function verifyAgainst(
  store: TrustStore,
  chain: readonly Buffer[],
  topIssuer: string | undefined,
): Promise<TrustResult> {
  const common = {
    label: store.label,
    path: store.path,
    present: store.exists,
    certificates: store.certificates.length,
  };
  if (!store.exists) return { ...common, verified: false, reason: 'not present' };
  if (store.certificates.length === 0) {
    return { ...common, verified: false, reason: store.problem ?? 'holds no certificates', content: { kind: 'empty' } };
  }
  const v = await verifyAgainstStore(chain, store);
  const error = v.error?.code;
  return {
    ...common,
    verified: v.verified,
    ...(error ? { error } : {}),
    reason: verifyReason(error, v.content, topIssuer),
    content: v.content,
  };
}

/** The result with its keys in reading order (JSON output follows the connection's steps). */
function ordered(r: ProbeResult): ProbeResult {
  const keys: (keyof ProbeResult)[] = [
    'host',
    'port',
    'via',
    'user',
    'database',
    'reachable',
    'tcpError',
    'sslRequest',
    'plaintext',
    'directTls',
    'tls',
    'legacyTls',
    'tlsSession',
    'chain',
    'missingIntermediate',
    'missingIntermediateEvidence',
    'untrustedRoot',
    'hostname',
    'trust',
    'sslmodes',
  ];
  const out: Record<string, unknown> = {};
  for (const k of keys) if (r[k] !== undefined) out[k] = r[k];
  return out as unknown as ProbeResult;
}

export async function probe(target: Endpoint, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const user = opts.user ?? process.env.PGUSER ?? userInfo().username;
  const database = opts.database ?? user;
  const home = opts.home ?? homedir();
  const direct = opts.direct === true;
  const servername = opts.sni ?? target.host;
  const base = { servername, direct };
  const result: {
    -readonly [K in keyof ProbeResult]: ProbeResult[K];
  } = {
    host: target.host,
    port: target.port,
    via: direct ? 'direct' : 'sslrequest',
    reachable: false,
    trust: [],
    sslmodes: [],
    user,
    database,
  };

  // 1. Main handshake, recording the server's flight; libpq's defaults (TLS 1.2 to 1.3).
  // libpq 17+ offers ALPN "postgresql" on the SSLRequest path too.
  const main = await negotiate(
    target,
    { ...base, capture: true, minVersion: 'TLSv1.2', alpn: [ALPN_POSTGRESQL] },
    timeoutMs,
  );
  if (main.stage === 'tcp') {
    result.tcpError = `${main.code}: ${main.message}`;
    return ordered(result);
  }
  result.reachable = true;
  if (main.stage === 'sslrequest') result.sslRequest = main.answer;
  else if (!direct) result.sslRequest = { answer: 'S', extraBytes: 0 };
  let chainDer: readonly Buffer[] = [];
  if (main.stage === 'tls') {
    result.tls = { ok: false, error: main.message, code: main.code, alert: main.alert };
    // libpq's defaults failed; try everything OpenSSL can (TLS 1.0+, security level 0) to still show the server.
    const legacy = await negotiate(
      target,
      {
        ...base,
        capture: true,
        minVersion: 'TLSv1',
        ciphers: `ALL:COMPLEMENTOFALL:@SECLEVEL=0:${TLS13_SUITES}`,
      },
      timeoutMs,
    );
    if (legacy.stage === 'done') {
      closeTls(legacy.socket);
      result.legacyTls = { protocol: legacy.protocol, cipher: legacy.cipher.name };
      chainDer = legacy.peerCertificates;
      result.chain = await inspectChain(chainDer);
      if (chainDer[0]) result.hostname = verifyHostName(chainDer[0], target.host);
      result.tls = {
        ...result.tls,
        error: `${main.message}; the server only completes a handshake with settings libpq does not use by default (${legacy.protocol}, ${legacy.cipher.name})`,
      };
    }
  } else if (main.stage === 'done') {
    const bits = suiteBits(main.cipher.standardName) ?? suiteBits(main.cipher.name);
    result.tls = {
      ok: true,
      protocol: main.protocol,
      cipher: main.cipher.name,
      cipherIana: main.cipher.standardName,
      bits,
      group: groupText(main.group),
      alpn: main.alpn,
      certificateRequested: main.certificateRequested,
      chainAsSent: main.chainAsSent,
    };
    chainDer = main.peerCertificates;
    result.tlsSession = judgeStartup(await startupReply(main.socket, user, database, timeoutMs));
    closeTls(main.socket);
    result.chain = await inspectChain(chainDer);
    if (chainDer[0]) result.hostname = verifyHostName(chainDer[0], target.host);
  }

  // 2. Plaintext: a StartupMessage without SSLRequest.
  const plainSock = await openTcp(target, timeoutMs);
  if (plainSock instanceof Socket) {
    result.plaintext = judgeStartup(await startupReply(plainSock, user, database, timeoutMs));
    plainSock.destroy();
  }

  // 3. The other way in: direct TLS when we used SSLRequest, and the reverse.
  if (!direct) {
    const d = await negotiate(target, { ...base, direct: true }, timeoutMs);
    if (d.stage === 'done') {
      closeTls(d.socket);
      result.directTls = {
        supported: d.alpn === 'postgresql',
        detail:
          d.alpn === 'postgresql'
            ? 'supported (ALPN "postgresql", PostgreSQL 17+)'
            : 'handshake completed without ALPN "postgresql"',
      };
    } else {
      result.directTls = {
        supported: false,
        detail: d.stage === 'tls' ? `not supported (${d.message})` : 'not supported',
      };
    }
  } else {
    const s = await negotiate(target, { ...base, direct: false }, timeoutMs);
    if (s.stage === 'sslrequest') result.sslRequest = s.answer;
    else if (s.stage !== 'tcp') result.sslRequest = { answer: 'S', extraBytes: 0 };
    if (s.stage === 'done') closeTls(s.socket);
    result.directTls = {
      supported: main.stage === 'done' && main.alpn === 'postgresql',
      detail: main.stage === 'done' ? 'supported (used for this probe)' : 'failed',
    };
  }

  // 4. Trust: the given root file, ~/.postgresql/root.crt, the system store.
  const defaultRoot = join(home, '.postgresql', 'root.crt');
  const stores: TrustStore[] = [];
  if (opts.rootcert && opts.rootcert !== 'system')
    stores.push(loadTrustStore(opts.rootcert, resolvePath(opts.rootcert)));
  stores.push(loadTrustStore('~/.postgresql/root.crt', defaultRoot));
  const sys = systemStorePath();
  stores.push(loadTrustStore('system', sys ?? ''));
  if (main.stage === 'done') {
    const trust: TrustResult[] = [];
    for (const s of stores) trust.push(await verifyAgainst(s, chainDer, result.chain?.topIssuer));
    result.trust = trust;
    if (result.chain) {
      const userStores = stores.filter((s) => s.label !== 'system' && s.exists);
      const end = await chainEnd(result.chain, trust, userStores);
      if (end?.kind === 'missing-intermediate') {
        result.missingIntermediate = true;
        result.missingIntermediateEvidence = { store: end.store, roots: end.roots };
      } else if (end?.kind === 'untrusted-root') {
        const { kind: _kind, ...root } = end;
        result.untrustedRoot = root;
      }
    }
  }

  // 5. sslmode verdicts, with the store libpq would use for verify-ca/verify-full.
  const rootLabel = opts.rootcert === 'system' ? 'system' : opts.rootcert ? opts.rootcert : '~/.postgresql/root.crt';
  const root = result.trust.find((t) => t.label === rootLabel) ?? {
    label: rootLabel,
    present: stores.find((s) => s.label === rootLabel)?.exists ?? false,
    verified: false,
    reason: 'not checked',
  };
  result.sslmodes = sslmodeVerdicts({
    sslAnswer: direct ? 'S' : (result.sslRequest?.answer ?? 'closed'),
    tlsOk: result.tls?.ok === true,
    tlsError: result.tls?.error,
    tlsSessionAccepted: result.tlsSession?.accepted,
    tlsSessionRefusal: result.tlsSession?.summary,
    plaintextAccepted: result.plaintext?.accepted,
    plaintextRefusal: result.plaintext?.summary,
    rootStore: { label: rootLabel, present: root.present, verified: root.verified, reason: root.reason },
    requireVerifies: !opts.rootcert && stores.some((s) => s.label === '~/.postgresql/root.crt' && s.exists),
    hostnameMatch: result.hostname?.ok === true,
    hostnameMessage: result.hostname && !result.hostname.ok ? result.hostname.message : undefined,
  });
  return ordered(result);
}
