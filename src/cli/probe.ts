/** `pgtls probe HOST[:PORT]`: what the server offers over TLS and which sslmode values would connect. */
import { notableFindings } from '../doctor/chain.js';
import { type ProbeResult, probe } from '../doctor/probe.js';
import { parseEndpoint } from '../doctor/wire.js';
import { PgtlsError } from '../errors.js';
import { type Command, ERR_USAGE, EXIT, flag, oneTarget, parseCommandArgs, str, timeoutMs } from './command.js';
import { MARK, pad, printJson, style, withUsageExit } from './doctor-format.js';

const HELP = `Usage: pgtls probe HOST[:PORT] [options]

Show what a PostgreSQL server offers over TLS, like openssl s_client -starttls postgres but readable: its answer to
SSLRequest, whether it also accepts plaintext and direct TLS, the TLS version, cipher and group, the certificate chain
exactly as sent and what is wrong with it, the host name under libpq's rules, verification against your root file,
~/.postgresql/root.crt and the system store, and which sslmode values would connect.

Options:
  --rootcert FILE      the sslrootcert to judge verify-ca / verify-full with ("system" for the system store)
  --sni NAME           server name to send (default: the host, unless it is an IP address)
  --direct             use direct TLS (PostgreSQL 17+, sslnegotiation=direct) instead of SSLRequest
  --user NAME          user name for the startup checks (default: PGUSER, then your login name)
  --database NAME      database for the startup checks (default: the user name)
  --timeout SECONDS    per-connection timeout (default 10)
  --json               machine-readable output
  -h, --help           show this help

The probe never authenticates: it sends a StartupMessage and reads only the server's first reply.
Exit status: 0 at least one sslmode would connect, 1 none would (or the server is unreachable), 2 usage error.`;

export const command: Command = (argv) =>
  withUsageExit(async () => {
    const args = parseCommandArgs(
      argv,
      {
        rootcert: { type: 'string' },
        sni: { type: 'string' },
        direct: { type: 'boolean' },
        user: { type: 'string' },
        database: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
      },
      HELP,
    );
    if (!args) return EXIT.ok;
    const spec = oneTarget(args, 'probe');
    const timeout = timeoutMs(args, 10)! / 1000;
    const r = await probe(parseEndpoint(spec), {
      rootcert: str(args, 'rootcert'),
      sni: str(args, 'sni'),
      direct: flag(args, 'direct'),
      user: str(args, 'user'),
      database: str(args, 'database'),
      timeoutMs: timeout * 1000,
    });
    if (flag(args, 'json')) printJson(r);
    else printHuman(r);
    return r.sslmodes.some((m) => m.connects) ? EXIT.ok : EXIT.failure;
  });

function printHuman(r: ProbeResult): void {
  const s = style();
  const out: string[] = [s.bold(`pgtls probe ${r.host}:${r.port}`)];
  const row = (label: string, value: string) => out.push(`  ${pad(label, 17)}${value}`);
  if (!r.reachable) {
    row('TCP', s.bad(`${MARK.bad} cannot connect: ${r.tcpError ?? 'unknown'}`));
    process.stdout.write(`${out.join('\n')}\n`);
    return;
  }
  const a = r.sslRequest;
  if (a) {
    const text =
      a.answer === 'S'
        ? s.ok('S: the server accepts TLS') +
          (a.extraBytes ? s.bad(` (and sent ${a.extraBytes} unencrypted bytes after it!)`) : '')
        : a.answer === 'N'
          ? s.bad('N: the server does not accept TLS (ssl = off)')
          : a.answer === 'E'
            ? s.bad(`an error instead of S/N: ${a.error.M ?? ''}`)
            : s.bad(`no S/N answer (${a.answer}): not a PostgreSQL server, or a proxy in the way`);
    row('SSLRequest', text);
  }
  if (r.plaintext) {
    row(
      'Plaintext',
      r.plaintext.accepted === false
        ? s.ok(`refused: ${r.plaintext.summary}`)
        : s.warn(`accepted: ${r.plaintext.summary}`),
    );
  }
  if (r.directTls) row('Direct TLS', r.directTls.supported ? r.directTls.detail : s.dim(r.directTls.detail));
  const t = r.tls;
  if (t?.ok) {
    row(
      'TLS',
      `${t.protocol}, ${t.cipher}${t.bits ? ` (${t.bits} bits)` : ''}${t.cipherIana && t.cipherIana !== t.cipher ? s.dim(` ${t.cipherIana}`) : ''}`,
    );
    row('Key exchange', t.group ?? 'none (static RSA)');
    row('ALPN', t.alpn ? t.alpn : s.dim('none'));
    if (t.certificateRequested !== undefined)
      row(
        'Client cert',
        t.certificateRequested ? 'requested by the server (ssl_ca_file is set)' : s.dim('not requested'),
      );
  } else if (t) {
    row(
      'TLS',
      s.bad(`${MARK.bad} handshake with libpq's defaults failed: ${t.alert ? `server alert "${t.alert}"` : t.error}`),
    );
    if (r.legacyTls) {
      row(
        '',
        s.warn(`${MARK.warn} it succeeds only with ${r.legacyTls.protocol} / ${r.legacyTls.cipher} (legacy settings)`),
      );
    }
  }
  if (r.tlsSession) {
    const v = r.tlsSession;
    row('Session over TLS', v.accepted === false ? s.bad(`refused: ${v.summary}`) : v.summary);
  }
  if (r.chain) {
    out.push(
      '',
      `  Certificate chain ${t?.chainAsSent ? '(exactly as sent)' : '(as re-linked by OpenSSL)'}, ${r.chain.certificates.length} certificate(s)`,
    );
    for (const c of r.chain.certificates) {
      const days =
        c.status === 'expired'
          ? s.bad(`expired ${-c.daysLeft} days ago`)
          : c.status === 'not-yet-valid'
            ? s.bad('not valid yet')
            : c.status === 'expiring'
              ? s.warn(`${c.daysLeft} days left`)
              : `${c.daysLeft} days left`;
      const kind = c.selfSigned ? '  [root CA]' : c.ca ? '  [CA]' : '';
      out.push(`   ${c.index}  ${s.bold(c.subject)}${s.dim(kind)}`);
      out.push(`      issuer   ${c.issuer}`);
      out.push(`      valid    ${c.notBefore.slice(0, 10)} → ${c.notAfter.slice(0, 10)} (${days})`);
      const sans = [...c.sans.dns.map((d) => `DNS:${d}`), ...c.sans.ip.map((i) => `IP:${i}`)];
      if (sans.length) out.push(`      SANs     ${sans.join(', ')}`);
      const key = `${c.key.type}${c.key.curve ? ` ${c.key.curve}` : c.key.bits ? ` ${c.key.bits}` : ''}`;
      out.push(`      key      ${key}   ${s.dim(`SHA-256 ${c.sha256}`)}`);
    }
    const findings = notableFindings(r.chain);
    if (findings.length === 0 && !r.missingIntermediate && !r.untrustedRoot)
      out.push(`  ${s.ok(MARK.ok)} chain complete and in order`);
    for (const f of findings) out.push(`  ${f.level === 'error' ? s.bad(MARK.bad) : s.warn(MARK.warn)} ${f.message}`);
    const chainEnd = chainEndText(r);
    if (chainEnd) out.push(`  ${s.bad(MARK.bad)} ${chainEnd}`);
  }
  if (r.hostname) {
    out.push('');
    row(
      'Host name',
      r.hostname.ok
        ? s.ok(`${MARK.ok} "${r.host}" matches "${r.hostname.matched}" (libpq rules)`)
        : s.bad(`${MARK.bad} ${r.hostname.message}`),
    );
  }
  if (r.trust.length) {
    out.push('', '  Verification');
    for (const v of r.trust) {
      const label = pad(v.label === 'system' ? `system (${v.path || 'none found'})` : v.label, 40);
      if (!v.present) out.push(`    ${label} ${s.dim('not present')}`);
      else out.push(`    ${label} ${v.verified ? s.ok(`${MARK.ok} verifies`) : s.bad(`${MARK.bad} ${v.reason}`)}`);
    }
  }
  out.push('', '  sslmode');
  for (const m of r.sslmodes) {
    const mark = !m.connects ? s.bad(MARK.bad) : m.security === 'verified-full' ? s.ok(MARK.ok) : s.warn(MARK.ok);
    out.push(`    ${mark} ${pad(m.sslmode, 12)} ${m.connects ? '' : s.bad('fails: ')}${m.why}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

/** Why the chain does not verify here, when it is about its top: an untrusted (private) root, or a missing link. */
export function chainEndText(r: ProbeResult): string | undefined {
  const e = r.missingIntermediateEvidence;
  const top = r.chain?.certificates[0]?.issuer ?? '';
  if (r.missingIntermediate && e) {
    const roots = e.roots.map((x) => `"${x}"`).join(', ');
    return `the server sends only its own certificate, and its issuer "${top}" is not the root in ${e.store} (${roots}): the server is missing its intermediate — append "${top}" to ssl_cert_file after the server certificate (or, if "${top}" is a root, ${e.store} holds a different one)`;
  }
  const u = r.untrustedRoot;
  if (!u) return undefined;
  const give = 'give it with --rootcert FILE (clients: sslrootcert=FILE)';
  if (u.selfSignedLeaf)
    return `the server's certificate "${u.subject}" is self-signed and no trust store here holds it: if you trust it, ${give}`;
  if (u.sent)
    return `the chain ends at the root "${u.subject}", sent by the server, which no trust store here holds (a private CA?): if you trust it, ${give}`;
  if (u.leafOnly)
    return `the chain ends at "${u.subject}", the issuer of the server's certificate, which no trust store here holds: if it is your private CA's root, ${give}; should it then still not verify, it is an intermediate the server must send too`;
  return `the chain ends at a root this machine does not trust, "${u.subject}" (a private CA?): ${give}`;
}
