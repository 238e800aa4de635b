/**
 * From libpq's message for a failed attempt (and what the doctor saw itself) to one cause and one fix.
 * Each rule recognises libpq's or PostgreSQL's own words (fe-connect.c, fe-secure-openssl.c, auth.c, hba.c), then
 * checks the facts before blaming anything: a version window is confirmed by asking the server which versions it
 * accepts, a pinned intermediate by looking inside sslrootcert, and so on.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { AttemptFailure } from '../client/errors.js';
import type { ConnectionPlan } from '../client/resolve.js';
import { parseCertificates } from '../pki/pem.js';
import { endpointText, refusedEndpoints } from './attempts.js';
import { type Diagnosis, d } from './diagnosis.js';
import type { Observed, Stage } from './doctor.js';
import { certificateProblem } from './explain-chain.js';
import { noSharedCipher, versionWindow } from './explain-tls.js';

export type { Diagnosis } from './diagnosis.js';

export interface ExplainInput {
  readonly message: string;
  readonly reason?: string;
  readonly method?: AttemptFailure['method'];
  readonly failures?: readonly AttemptFailure[];
  readonly plan?: ConnectionPlan;
  readonly observed?: Observed;
  readonly timeoutMs?: number;
  readonly stage?: Stage;
}

const VERSION_FAILURE =
  /no protocols available|unsupported protocol|protocol version|wrong version number|version too (?:low|high)|bad protocol version|does not support any SSL protocol version/i;
const CIPHER_FAILURE = /handshake failure|no shared cipher|insufficient security|no cipher/i;
const CLIENT_CERT_ALERT =
  /alert (?:unknown ca|bad certificate|certificate unknown|certificate required|access denied|decrypt error|unsupported certificate|certificate revoked|certificate expired)/i;
/**
 * The pgtls gateway's refusal of a client certificate (src/gateway/refusals.ts clientCertVerifyFailed): it completes
 * the handshake, then sends FATAL 08P01 with PostgreSQL's server-log text and OpenSSL's reason as DETAIL, where
 * PostgreSQL would have sent a TLS alert. libpq shows it as a server message ("FATAL:  …"), which its own
 * verification failure ("SSL error: certificate verify failed") never is.
 */
const CLIENT_CERT_REFUSED =
  /^(?:FATAL|ERROR): {2}could not accept SSL connection: certificate verify failed(?:\nDETAIL: {2}(.+))?/m;

/** The client certificate libpq would send, and its CN (for messages that name it). */
function clientCertCN(plan: ConnectionPlan): { cn?: string; file: string; exists: boolean } {
  const file = plan.ssl.cert;
  if (!file || !existsSync(file)) return { file, exists: false };
  try {
    const c = parseCertificates(readFileSync(file), file)[0];
    const cn = c?.subjectName.getField('CN')[0];
    return { file, exists: true, ...(cn ? { cn } : {}) };
  } catch {
    return { file, exists: true };
  }
}

/** The server refused the certificate that was sent; `how` is its way of saying so (an alert, or a FATAL). */
function clientCertRejected(plan: ConnectionPlan, how: string): Diagnosis {
  const c = clientCertCN(plan);
  return d(
    'client-certificate-rejected',
    'client-certificate',
    `the server rejected the client certificate "${c.file}"${c.cn ? ` (CN=${c.cn})` : ''} ${how}: it does not trust its issuer, or the certificate is expired or revoked`,
    "use a certificate issued by a CA in the server's ssl_ca_file (or add its CA there), valid and not revoked",
  );
}

function fileMode(file: string): string | undefined {
  try {
    return (statSync(file).mode & 0o777).toString(8).padStart(4, '0');
  } catch {
    return undefined;
  }
}

export async function explain(input: ExplainInput): Promise<Diagnosis> {
  const m = input.message;
  const plan = input.plan;
  const o = input.observed;
  const timeoutMs = input.timeoutMs ?? 10_000;
  const mode = plan?.ssl.mode ?? 'prefer';
  if (input.stage === 'parameters' || !plan) {
    return d(
      'invalid-parameters',
      'parameters',
      m,
      'fix the connection string: see `pgtls doctor --help` for the syntax (keyword=value pairs or a postgresql:// URI)',
    );
  }
  if (/could not translate host name|could not parse network address/.test(m)) {
    return d(
      'dns',
      'dns',
      m.split('\n')[0]!,
      'check the host name (typo, DNS, /etc/hosts) or give the address with hostaddr',
    );
  }
  if (/Connection refused/.test(m)) {
    // Every address libpq tried refused (had one been reached, its failure would be the one explained).
    const refused = refusedEndpoints(input.failures ?? []);
    const where = refused.length ? refused.join(' or ') : endpointText(o?.endpoint.host ?? '', o?.endpoint.port ?? '');
    return d(
      'tcp-refused',
      'tcp',
      `nothing accepts connections at ${where}`,
      'check host and port, that PostgreSQL runs and listens there (listen_addresses, port), and firewalls',
    );
  }
  if (/timeout expired|timed out/.test(m) && o?.wire?.stage === 'sslrequest' && o.wire.answer.answer === 'timeout') {
    return d(
      'no-answer',
      'sslrequest',
      `${o.endpoint.host}:${o.endpoint.port} accepts TCP connections but never answers SSLRequest: it is not PostgreSQL, or the server or a proxy in front of it hangs`,
      'check what listens on that port (a load balancer or firewall holding connections?) and the server log',
    );
  }
  if (/timeout expired|timed out|No route to host|Network is unreachable/.test(m)) {
    return d(
      'tcp-timeout',
      'tcp',
      `no answer from ${o?.endpoint.host ?? ''}:${o?.endpoint.port ?? ''} (${m.split('\n')[0]})`,
      'check that the address is reachable from here (firewall, network security group, private endpoint, VPN)',
    );
  }
  if (/server does not support SSL, but SSL was required/.test(m)) {
    return d(
      'server-ssl-off',
      'sslrequest',
      "the server answered 'N' to SSLRequest: it does not accept TLS (ssl = off)",
      `turn TLS on at the server (ssl = on with ssl_cert_file/ssl_key_file) — do not lower sslmode=${mode}, which would send the password in clear`,
    );
  }
  if (/received unencrypted data after SSL response/.test(m)) {
    return d(
      'unencrypted-data-after-ssl',
      'sslrequest',
      "bytes followed the server's 'S' before TLS started: something between you and the server injects data (CVE-2021-23222)",
      'connect directly to the server and find the proxy or device that injects data',
    );
  }
  if (/received invalid response to SSL negotiation/.test(m)) {
    return d(
      'not-postgresql',
      'sslrequest',
      `the server at ${o?.endpoint.host ?? ''}:${o?.endpoint.port ?? ''} answered SSLRequest with neither 'S' nor 'N': it is not PostgreSQL (or a proxy that does not speak its protocol)`,
      'check host and port; point the client at PostgreSQL (or at a PostgreSQL-aware proxy)',
    );
  }
  if (/server sent an error response during SSL exchange/.test(m)) {
    return d(
      'ssl-exchange-error',
      'sslrequest',
      'the server answered SSLRequest with an error instead of S/N (a very old server, or a proxy refusing TLS negotiation)',
      "read the server's or proxy's log; with a pooler, enable TLS on it (client_tls_sslmode for PgBouncer)",
    );
  }
  if (/root certificate file .* does not exist/.test(m)) {
    return d(
      'root-certificate-missing',
      'tls',
      `sslmode=${mode} needs root certificates, but "${plan.ssl.rootCert}" does not exist`,
      `download the server's root CA certificate to "${plan.ssl.rootCert}" or point sslrootcert at it (sslrootcert=system for a public CA); or use sslmode=require to encrypt without verifying`,
    );
  }
  if (/has group or world access/.test(m)) {
    const file = /"([^"]+)"/.exec(m)?.[1] ?? plan.ssl.key;
    return d(
      'key-file-permissions',
      'client-certificate',
      `the private key file "${file}" is readable by others (mode ${fileMode(file) ?? '?'}), and libpq refuses such keys`,
      `chmod 0600 "${file}" (or 0640 if it is owned by root)`,
    );
  }
  if (/certificate present, but not private key file/.test(m)) {
    return d(
      'client-key-missing',
      'client-certificate',
      m.split('\n')[0]!,
      'set sslkey to the private key of sslcert, or remove the certificate if you do not mean to send one',
    );
  }
  if (/does not match private key|key values mismatch/.test(m)) {
    return d(
      'client-key-mismatch',
      'client-certificate',
      `sslkey is not the private key of sslcert ("${plan.ssl.cert}")`,
      'give the key that belongs to this certificate (check with `pgtls cert inspect CERT --key KEY`)',
    );
  }
  if (/could not (?:open|read|load) (?:certificate|private key|root certificate|SSL certificate revocation)/.test(m)) {
    return d(
      'tls-file-unreadable',
      'client-certificate',
      m.split('\n')[0]!,
      'check the path and that this user may read the file',
    );
  }
  const refused = CLIENT_CERT_REFUSED.exec(m);
  if (refused) return clientCertRejected(plan, `after the handshake (${refused[1] ?? 'certificate verify failed'})`);
  if (/certificate verify failed/.test(m) && o) return await certificateProblem(plan, o, m, input.reason);
  if (/does not match host name|could not get server's host name|host name must be specified/.test(m)) {
    const names = o?.hostname?.names ?? [];
    return d(
      'hostname-mismatch',
      'hostname',
      names.length
        ? `the server's certificate is for ${names.map((n) => `"${n}"`).join(', ')}, not "${o?.host ?? ''}" (${m.split('\n')[0]})`
        : m.split('\n')[0]!,
      names.length
        ? `connect with host=${names.find((n) => !n.startsWith('*')) ?? names[0]} (a name the certificate has), or reissue the certificate with "${o?.host ?? ''}" in subjectAltName`
        : `reissue the certificate with "${o?.host ?? ''}" in subjectAltName`,
      names.length ? [`certificate names: ${names.join(', ')}`] : undefined,
    );
  }
  if (VERSION_FAILURE.test(m) && o) {
    const w = await versionWindow(plan, o, timeoutMs);
    if (w) return w;
  }
  if (CLIENT_CERT_ALERT.test(m)) {
    const c = clientCertCN(plan);
    const alert = /alert ([a-z ]+)/i.exec(m)?.[1] ?? 'bad certificate';
    if (!c.exists || /certificate required/.test(alert)) {
      return d(
        'client-certificate-required',
        'client-certificate',
        `the server requires a client certificate and none was sent ("${c.file}" does not exist)`,
        "set sslcert and sslkey to a certificate issued by a CA in the server's ssl_ca_file",
      );
    }
    return clientCertRejected(plan, `with TLS alert "${alert}"`);
  }
  if (CIPHER_FAILURE.test(m) && o) {
    const c = await noSharedCipher(plan, o, timeoutMs);
    if (c) return c;
  }
  if (VERSION_FAILURE.test(m)) {
    return d(
      'tls-version-mismatch',
      'tls',
      m.split('\n')[0]!,
      'make the client and server TLS version ranges overlap (ssl_min_protocol_version / ssl_max_protocol_version on both sides)',
    );
  }
  if (/server did not request an SSL certificate/.test(m)) {
    return d(
      'client-certificate-not-requested',
      'client-certificate',
      'sslcertmode=require, but the server did not ask for a client certificate (it has no ssl_ca_file)',
      'set ssl_ca_file on the server (and clientcert= in pg_hba.conf) if certificates are meant to be used, or use sslcertmode=allow',
    );
  }
  if (/server accepted connection without a valid SSL certificate/.test(m)) {
    return d(
      'client-certificate-not-sent',
      'client-certificate',
      `sslcertmode=require, but no client certificate was sent ("${plan.ssl.cert}" does not exist or was not used)`,
      'set sslcert and sslkey to your client certificate and key',
    );
  }
  if (/requires a valid client certificate/.test(m)) {
    const c = clientCertCN(plan);
    return d(
      'client-certificate-required',
      'client-certificate',
      `pg_hba.conf requires a client certificate (clientcert=verify-ca/verify-full or cert authentication) and none was sent${c.exists ? '' : ` ("${c.file}" does not exist)`}`,
      "set sslcert and sslkey to a certificate issued by a CA in the server's ssl_ca_file",
    );
  }
  if (/certificate authentication failed for user|CN mismatch|certificate validation .* failed for user/.test(m)) {
    const c = clientCertCN(plan);
    return d(
      'client-certificate-cn-mismatch',
      'authentication',
      `the client certificate's CN is "${c.cn ?? '?'}" but the user is "${plan.user}": PostgreSQL requires them to match (or a pg_ident.conf mapping)`,
      `connect as user=${c.cn ?? 'the certificate CN'}, add a pg_ident.conf map, or issue a certificate with CN=${plan.user}`,
    );
  }
  if (/no pg_hba\.conf entry .*no encryption/.test(m)) {
    return d(
      'server-requires-ssl',
      'sslrequest',
      `the server refuses unencrypted connections for this user and database (pg_hba.conf has no host/hostnossl line that matches), and sslmode=${mode} did not use TLS`,
      'use sslmode=require or stricter — best verify-full with sslrootcert',
    );
  }
  if (/no pg_hba\.conf entry .*SSL encryption/.test(m)) {
    return d(
      'hba-no-ssl-entry',
      'authentication',
      `pg_hba.conf has no line that accepts this user/database/address over TLS: ${m.split('\n')[0]}`,
      'on the server, add a hostssl line for this client (user, database, address) and reload',
    );
  }
  if (/no pg_hba\.conf entry|pg_hba\.conf rejects/.test(m)) {
    return d(
      'hba-rejected',
      'authentication',
      m.split('\n')[0]!,
      'on the server, add a matching pg_hba.conf line (type, database, user, address, method) and reload',
    );
  }
  if (/SSL connection is required/i.test(m)) {
    return d(
      'server-requires-ssl',
      'sslrequest',
      `the server requires TLS and sslmode=${mode} did not use it`,
      'use sslmode=require or stricter — best verify-full with sslrootcert',
    );
  }
  if (/password authentication failed/.test(m)) {
    return d(
      'password-wrong',
      'authentication',
      `the server rejected the password for user "${plan.user}"`,
      'check the password (password=, PGPASSWORD, ~/.pgpass); TLS is working',
    );
  }
  if (/no password supplied/.test(m)) {
    return d(
      'password-missing',
      'authentication',
      `the server asks for a password for user "${plan.user}" and none was given`,
      'give it with PGPASSWORD or ~/.pgpass (avoid password= in connection strings); TLS is working',
    );
  }
  if (/role ".*" does not exist/.test(m)) {
    return d(
      'role-missing',
      'authentication',
      m.replace(/^FATAL:\s+/, '').split('\n')[0]!,
      'check the user name, or create the role on the server; TLS is working',
    );
  }
  if (/database ".*" does not exist/.test(m)) {
    return d(
      'database-missing',
      'authentication',
      m.replace(/^FATAL:\s+/, '').split('\n')[0]!,
      'check dbname, or create the database; TLS is working',
    );
  }
  if (/direct SSL connection was established without ALPN|unexpected ALPN/.test(m)) {
    return d(
      'direct-tls-unsupported',
      'tls',
      'the server completed a direct TLS handshake without ALPN "postgresql": it is not PostgreSQL 17+ (or a proxy terminates TLS)',
      'use sslnegotiation=postgres (the default) with this server',
    );
  }
  if (/EOF detected|closed the connection unexpectedly/.test(m)) {
    if (plan.ssl.negotiation === 'direct') {
      return d(
        'direct-tls-unsupported',
        'tls',
        'the server closed the connection when TLS started directly: it does not support sslnegotiation=direct (PostgreSQL 17+ only)',
        'use sslnegotiation=postgres (the default)',
      );
    }
    return d(
      'connection-closed',
      'tls',
      'the server closed the connection during the TLS handshake or login',
      "read the server's log for the reason (often a TLS library error or a proxy in the way)",
    );
  }
  if (o?.wire?.stage === 'tls' && CIPHER_FAILURE.test(o.wire.message)) {
    const c = await noSharedCipher(plan, o, timeoutMs);
    if (c) return c;
  }
  return d(
    'connection-failed',
    'authentication',
    m.split('\n')[0]!,
    'read the full libpq message below and the server log; `pgtls probe HOST` shows what the server offers',
  );
}
