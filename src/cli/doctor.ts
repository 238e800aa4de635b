/** `pgtls doctor "CONNINFO or URI"`: connect as libpq would, step by step, and explain the first failure. */
import { type DoctorReport, doctor } from '../doctor/doctor.js';
import { type RotationReport, rotation } from '../doctor/rotation.js';
import { PgtlsError } from '../errors.js';
import { type Command, ERR_USAGE, EXIT, flag, oneTarget, parseCommandArgs, str, timeoutMs } from './command.js';
import { MARK, pad, printJson, style, withUsageExit } from './doctor-format.js';

const HELP = `Usage: pgtls doctor "CONNINFO or URI" [options]
       pgtls doctor --rotation "CONNINFO or URI" [--roots FILE] [options]

Connect exactly as libpq (psql) would — same parameters, environment (PGSSLMODE, PGSSLROOTCERT, …) and default files
(~/.postgresql/root.crt, postgresql.crt, postgresql.key, ~/.pgpass) — step by step: parameters, DNS, TCP, SSLRequest,
TLS handshake, certificate chain, host name, client certificate, authentication. Stops at the first failure and names
its cause and its fix.

Examples:
  pgtls doctor "host=db.example.com dbname=app user=app sslmode=verify-full sslrootcert=root.crt"
  pgtls doctor "postgresql://app@db.example.com/app?sslmode=require"
  pgtls doctor --rotation "host=myserver.postgres.database.azure.com user=app sslmode=verify-full"

Options:
  --rotation           rotation readiness: will this client survive the server moving to another intermediate or
                       root? Detects pinned intermediates / server certificates and missing roots
  --roots FILE         with --rotation: roots (or intermediates) the server may move to; each must be covered
  --timeout SECONDS    per-step timeout (default: connect_timeout, else 10)
  --json               machine-readable output
  -h, --help           show this help

Exit status: 0 the connection would succeed (a warning is printed when the server is not verified, i.e. sslmode is
below verify-full), 1 it would fail (or, with --rotation, the client is not ready), 2 usage error.`;

export const command: Command = (argv) =>
  withUsageExit(async () => {
    const args = parseCommandArgs(
      argv,
      {
        rotation: { type: 'boolean' },
        roots: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
      },
      HELP,
    );
    if (!args) return EXIT.ok;
    const [input, ...extra] = args.positionals;
    if (input === undefined || extra.length > 0) {
      throw new PgtlsError(ERR_USAGE, 'expected exactly one connection string or URI (quote it)', {
        details: { hint: 'pgtls doctor "host=… sslmode=verify-full sslrootcert=…"' },
      });
    }
    if (str(args, 'roots') && !flag(args, 'rotation')) {
      throw new PgtlsError(ERR_USAGE, '--roots only applies with --rotation');
    }
    const timeout = timeoutMs(args);
    const json = flag(args, 'json');
    if (flag(args, 'rotation')) {
      const r = await rotation(input, { roots: str(args, 'roots'), ...(timeout ? { timeoutMs: timeout } : {}) });
      if (json) printJson(r);
      else printRotation(r);
      return r.ready ? EXIT.ok : EXIT.failure;
    }
    const r = await doctor(input, timeout ? { timeoutMs: timeout } : {});
    if (json) printJson(r);
    else printReport(r);
    return r.ok ? EXIT.ok : EXIT.failure;
  });

function printReport(r: DoctorReport): void {
  const s = style();
  const out: string[] = [];
  if (r.parameters.length) {
    out.push(s.bold('Parameters'));
    for (const p of r.parameters) out.push(`  ${pad(p.name, 26)}${pad(p.value, 34)} ${s.dim(`(${p.source})`)}`);
    out.push('');
  }
  out.push(s.bold('Steps'));
  for (const st of r.steps) {
    const mark =
      st.status === 'ok'
        ? s.ok(MARK.ok)
        : st.status === 'fail'
          ? s.bad(MARK.bad)
          : st.status === 'warn'
            ? s.warn(MARK.warn)
            : s.dim(MARK.info);
    const text = st.status === 'skip' ? s.dim(st.summary) : st.status === 'fail' ? s.bad(st.summary) : st.summary;
    out.push(`  ${mark} ${pad(st.stage, 19)}${text}`);
    if (st.status === 'fail') for (const d of st.details ?? []) out.push(`      ${s.dim(d)}`);
  }
  out.push('');
  if (r.ok) {
    const c = r.connection;
    const how = c?.encryption === 'none' ? 'without encryption' : `over ${c?.protocol ?? 'TLS'} (${c?.cipher ?? ''})`;
    out.push(
      r.verified
        ? s.ok(`${MARK.ok} The connection succeeds ${how}, and the server is verified.`)
        : s.warn(`${MARK.ok} The connection succeeds ${how}, but the server is NOT verified.`),
    );
    for (const w of r.warnings) out.push(s.warn(`  ${MARK.warn} ${w}`));
  } else if (r.diagnosis) {
    out.push(s.bad(`${MARK.bad} Cause: ${r.diagnosis.cause}`));
    out.push(`  Fix:   ${r.diagnosis.fix}`);
    for (const e of r.diagnosis.evidence ?? []) out.push(s.dim(`  · ${e}`));
    if (r.libpqMessage) {
      out.push('', s.dim('libpq (psql) would say:'));
      for (const line of r.libpqMessage.split('\n')) out.push(s.dim(`  ${line}`));
    }
    for (const w of r.warnings) out.push(s.warn(`  ${MARK.warn} ${w}`));
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function printRotation(r: RotationReport): void {
  const s = style();
  const out: string[] = [s.bold('Rotation readiness')];
  if (!r.unaffected) {
    out.push(`  trust store     ${r.store.label}`);
    out.push(`  roots           ${r.store.roots.join('; ') || s.bad('none')}`);
    if (r.store.intermediates.length) out.push(`  intermediates   ${s.warn(r.store.intermediates.join('; '))}`);
    if (r.store.leaves.length) out.push(`  server certs    ${s.bad(r.store.leaves.join('; '))}`);
    if (r.chain.length) out.push(`  today's chain   ${r.chain.join(' ← ')}`);
    out.push('');
  }
  for (const f of r.findings) {
    const mark = f.level === 'ok' ? s.ok(MARK.ok) : f.level === 'warn' ? s.warn(MARK.warn) : s.bad(MARK.bad);
    out.push(`  ${mark} ${f.message}`);
  }
  out.push(
    '',
    r.ready
      ? s.ok(`${MARK.ok} Ready for a certificate rotation.`)
      : s.bad(`${MARK.bad} Not ready: fix the items marked ${MARK.bad}.`),
  );
  process.stdout.write(`${out.join('\n')}\n`);
}
