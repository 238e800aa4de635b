/**
 * The status page at `/` of the metrics listener: one self-contained HTML document (inline CSS, no script, no external
 * asset) readable at a glance — served certificates with days left, connections by TLS version and by outcome,
 * refusals by reason, the clients the report-only policy would refuse. No secrets: no keys, no passwords, no
 * message contents, no configuration values.
 */
import { type CertFileEntry, daysLeft } from '../admin/cert-files.js';
import type { OperatorView } from '../admin/runtime-view.js';

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);

/** Below this many days left a certificate is flagged (cert-manager renews at 2/3 of the lifetime; 30 days is the common alert). */
const WARN_DAYS = 30;

function table(headers: readonly string[], rows: readonly (readonly string[])[], empty: string, id: string): string {
  if (rows.length === 0) return `<p class="empty" id="${id}">${escapeHtml(empty)}</p>`;
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  // Cells are pre-escaped HTML (so a cell can carry a status class).
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function counts(m: Readonly<Record<string, number>>, what: string, id: string): string {
  const rows = Object.entries(m)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, v]) => [escapeHtml(k), `<span class="num">${v}</span>`]);
  return table([what, 'connections'], rows, 'none yet', id);
}

function certRow(e: CertFileEntry, now: Date): string[] {
  if (e.error) {
    return [escapeHtml(e.file), escapeHtml(e.kind), '', '', `<span class="bad">${escapeHtml(e.error)}</span>`, ''];
  }
  const days = e.notAfter ? daysLeft(e.notAfter, now) : undefined;
  const cls = days === undefined ? '' : days < 0 ? 'bad' : days < WARN_DAYS ? 'warn' : 'ok';
  const daysText = days === undefined ? '' : days < 0 ? `expired ${-days} days ago` : `${days}`;
  return [
    escapeHtml(e.file),
    escapeHtml(e.kind),
    escapeHtml(e.type === 'crl' ? `CRL by ${e.issuer}` : e.subject),
    escapeHtml(
      e.notAfter
        ? e.notAfter
            .toISOString()
            .replace('T', ' ')
            .replace(/\.\d+Z$/, ' UTC')
        : '',
    ),
    `<span class="days ${cls}">${escapeHtml(daysText)}</span>`,
    `<code>${escapeHtml(e.fingerprint.slice(0, 23))}…</code>`,
  ];
}

/** With `workers = N`: how many workers answered for this page, and which did not. */
export interface WorkersLine {
  readonly up: number;
  readonly missing: readonly number[];
}

function workersText(w: WorkersLine | undefined): string {
  if (!w) return '';
  const missing =
    w.missing.length === 0
      ? ''
      : ` · <span class="bad" id="workers-missing">worker ${w.missing.join(', ')} did not answer (missing from the counts)</span>`;
  return ` · <span id="workers">${w.up} of ${w.up + w.missing.length} workers answered</span>${missing}`;
}

export function renderStatusPage(
  view: Pick<OperatorView, 'version' | 'stats' | 'wouldRefuse'>,
  certs: readonly CertFileEntry[],
  now = new Date(),
  workers?: WorkersLine,
): string {
  const s = view.stats();
  const uptime = Math.floor((now.getTime() - s.started_at.getTime()) / 1000);
  const refusals = Object.fromEntries(Object.entries(s.refusals_by_reason).filter(([, v]) => v > 0));
  const would = view.wouldRefuse();
  const wouldRows = [...would]
    .reverse()
    .slice(0, 200)
    .map((e) => [
      escapeHtml(
        e.at
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, ' UTC'),
      ),
      escapeHtml(`${e.client}:${e.client_port}`),
      escapeHtml(e.user),
      escapeHtml(e.application_name),
      escapeHtml(e.negotiation),
      escapeHtml(e.tls_version),
      escapeHtml(e.cipher),
      escapeHtml(e.reasons.map((r) => r.message).join('; ')),
    ]);
  const tiles = [
    ['active sessions', s.active_sessions],
    ['connections', s.connections_total],
    ['relayed', s.relayed_total],
    ['refused', s.refused_total],
    ['would be refused', s.would_refuse_total],
    ['reloads failed', s.reloads_failed],
  ]
    .map(([k, v]) => `<div class="tile"><div class="v">${v}</div><div class="k">${escapeHtml(String(k))}</div></div>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>pgtls gateway status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2129;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #d0d7de}
.sub{color:#57606a}.tiles{display:flex;flex-wrap:wrap;gap:.6em;margin-top:1em}
.tile{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em;min-width:8em}
.tile .v{font-size:1.6em;font-weight:600}.tile .k{color:#57606a}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}
th{background:#f0f3f6}.num{font-variant-numeric:tabular-nums}.empty{color:#57606a;font-style:italic}
.days{font-weight:600}.ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e}
.cols{display:flex;flex-wrap:wrap;gap:2em}code{font-size:.9em}
</style></head><body>
<h1>pgtls gateway</h1>
<div class="sub">version ${escapeHtml(view.version)} · up ${uptime} s · ${escapeHtml(now.toISOString())}${workersText(workers)}</div>
<div class="tiles">${tiles}</div>
<h2>Served certificates</h2>
${table(
  ['file', 'kind', 'subject', 'not after', 'days left', 'SHA-256'],
  certs.map((e) => certRow(e, now)),
  'no certificate files',
  'certs',
)}
<div class="cols">
<div><h2>Connections by TLS version</h2>${counts(s.by_tls_version, 'TLS version', 'by-version')}</div>
<div><h2>Connections by outcome</h2>${counts(s.by_outcome, 'outcome', 'by-outcome')}</div>
<div><h2>Refusals by reason</h2>${counts(refusals, 'reason', 'refusals')}</div>
</div>
<h2>Would be refused (report-only policy)</h2>
${table(['at', 'client', 'user', 'application', 'negotiation', 'TLS', 'cipher', 'why'], wouldRows, 'no session would be refused by the report_* policy', 'would-refuse')}
</body></html>
`;
}
