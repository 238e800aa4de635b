/** `pgtls scan HOST[:PORT]`: accepted TLS versions, cipher suites and groups, optionally checked against a policy. */
import type { TlsVersion } from '../doctor/cipher-suites.js';
import { POLICIES, type Policy, type PolicyResult, checkPolicy, customPolicy, policyByName } from '../doctor/policy.js';
import { type ScanResult, scan } from '../doctor/scan.js';
import { parseEndpoint } from '../doctor/wire.js';
import { PgtlsError } from '../errors.js';
import { type Command, ERR_USAGE, EXIT, flag, oneTarget, parseCommandArgs, str, timeoutMs } from './command.js';
import { MARK, pad, printJson, progress, style, withUsageExit } from './doctor-format.js';

const HELP = `Usage: pgtls scan HOST[:PORT] [options]

List the TLS versions (1.0–1.3), cipher suites per version and key-exchange groups a PostgreSQL server accepts,
connecting as PostgreSQL clients do (SSLRequest, then TLS). Results match sslscan --starttls-psql.

Options:
  --policy NAME        check the result against a policy: ${Object.keys(POLICIES).join(', ')}
  --min VERSION        custom policy: lowest allowed version (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)
  --max VERSION        custom policy: highest allowed version
  --ciphers LIST       custom policy: allowed TLS ≤1.2 suites, ':'-separated OpenSSL or IANA names, or AEAD, HIGH, FS
  --sni NAME           server name to send (default: the host, unless it is an IP address)
  --timeout SECONDS    per-connection timeout (default 10)
  --json               machine-readable output (no progress indicator)
  -h, --help           show this help

Exit status: 0 scanned (and the policy passed), 1 the server does not do TLS, is unreachable, or fails the policy,
2 usage error.`;

const VERSION_LABEL: Readonly<Record<TlsVersion, string>> = {
  TLSv1: 'TLSv1.0',
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};

export const command: Command = (argv) =>
  withUsageExit(async () => {
    const args = parseCommandArgs(
      argv,
      {
        policy: { type: 'string' },
        min: { type: 'string' },
        max: { type: 'string' },
        ciphers: { type: 'string' },
        sni: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
      },
      HELP,
    );
    if (!args) return EXIT.ok;
    const spec = oneTarget(args, 'scan');
    const target = parseEndpoint(spec);
    const json = flag(args, 'json');
    const policyName = str(args, 'policy');
    const custom = str(args, 'min') ?? str(args, 'max') ?? str(args, 'ciphers');
    if (policyName && custom) {
      throw new PgtlsError(ERR_USAGE, '--policy cannot be combined with --min/--max/--ciphers', {
        details: { hint: 'Use a named policy or describe your own, not both.' },
      });
    }
    let policy: Policy | undefined;
    if (policyName) policy = policyByName(policyName);
    else if (custom)
      policy = customPolicy({ min: str(args, 'min'), max: str(args, 'max'), ciphers: str(args, 'ciphers') });
    const timeout = timeoutMs(args, 10)! / 1000;

    const bar = progress(!json);
    const result = await scan(target, {
      servername: str(args, 'sni') ?? target.host,
      timeoutMs: timeout * 1000,
      onProgress: (p) => bar.update(p.done, p.total, p.step),
    }).finally(() => bar.done());
    const verdict = policy ? checkPolicy(result, policy) : undefined;

    if (json) printJson({ ...result, ...(verdict ? { policy: verdict } : {}) });
    else printHuman(result, verdict);
    if (result.sslRequest !== 'S') return EXIT.failure;
    return verdict && !verdict.pass ? EXIT.failure : EXIT.ok;
  });

function printHuman(r: ScanResult, verdict: PolicyResult | undefined): void {
  const s = style();
  const out: string[] = [];
  out.push(s.bold(`pgtls scan ${r.host}:${r.port}`));
  if (r.sslRequest === 'tcp-failed') {
    out.push(`  ${s.bad(MARK.bad)} cannot connect: ${r.tcpError ?? 'unknown error'}`);
  } else if (r.sslRequest !== 'S') {
    const why: Record<string, string> = {
      N: "the server answered SSLRequest with 'N': it does not accept TLS (ssl = off, or not built with SSL)",
      E: 'the server answered SSLRequest with an error (a very old server, or not PostgreSQL)',
      closed: 'the server closed the connection after SSLRequest (not PostgreSQL, or a proxy that refuses it)',
      timeout: 'no answer to SSLRequest (not PostgreSQL?)',
      other: 'the answer to SSLRequest was neither S nor N: this is not a PostgreSQL server',
    };
    out.push(`  ${s.bad(MARK.bad)} ${why[r.sslRequest] ?? r.sslRequest}`);
  } else {
    out.push('', '  Protocols');
    for (const v of ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const) {
      const on = r.versions[v];
      out.push(`    ${pad(VERSION_LABEL[v], 9)}${on ? s.ok('enabled') : s.dim('disabled')}`);
    }
    out.push('', '  Cipher suites (in server preference order)');
    if (r.suites.length === 0) out.push('    none');
    for (const c of r.suites) {
      const status = c.preferred ? 'Preferred' : 'Accepted ';
      out.push(
        `    ${status}  ${pad(VERSION_LABEL[c.version], 8)} ${pad(`${c.bits} bits`, 9)} ${pad(c.name, 31)} ${s.dim(c.keyExchange ?? '')}`.trimEnd(),
      );
    }
    out.push('', '  Key exchange groups');
    for (const v of ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1'] as const) {
      const gs = r.groups.filter((g) => g.version === v).map((g) => g.name);
      if (r.versions[v])
        out.push(`    ${pad(VERSION_LABEL[v], 9)}${gs.length ? gs.join(', ') : s.dim('none (no ECDHE suites)')}`);
    }
  }
  if (verdict) {
    out.push('');
    const head = `  Policy ${verdict.policy} (${verdict.description}): `;
    out.push(head + (verdict.pass ? s.ok('PASS') : s.bad('FAIL')));
    for (const v of verdict.offendingVersions) out.push(`    ${s.bad(MARK.bad)} ${VERSION_LABEL[v]} is accepted`);
    for (const c of verdict.offendingSuites) {
      out.push(`    ${s.bad(MARK.bad)} ${VERSION_LABEL[c.version]} ${c.name} (${c.iana}) is accepted`);
    }
    if (r.sslRequest !== 'S') out.push(`    ${s.bad(MARK.bad)} the server does not offer TLS at all`);
    for (const m of verdict.missingSuites)
      out.push(`    ${s.warn(MARK.warn)} ${m} is not accepted (the policy expects it)`);
  }
  out.push(s.dim(`  (${r.handshakes} handshakes)`));
  process.stdout.write(`${out.join('\n')}\n`);
}
