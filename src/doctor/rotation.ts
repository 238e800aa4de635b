/**
 * `pgtls doctor --rotation`: will this client still connect when the server's chain moves to another intermediate or
 * root (Azure's 2026 intermediate rotation; the DigiCert Global Root G2 / Microsoft RSA Root CA 2017 / DigiCert
 * Global Root CA set)? Looks at the trust store the client would use (libpq's sslrootcert rules, via pgtls/client)
 * and at the chain the server sends today.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ClientError } from '../client/errors.js';
import { type Environment, resolve } from '../client/resolve.js';
import { loadTlsMaterial } from '../client/tls-files.js';
import { facts, likelyIssued, signatureVerifies } from '../pki/facts.js';
import { isSelfSigned } from '../pki/inspect.js';
import { parseCertificates, splitPem } from '../pki/pem.js';
import { AZURE_ROOTS, describeSource, nodeStoreGap } from '../pki/roots.js';
import type { x509 } from '../pki/x509.js';
import { toX509, verifyAgainstStore } from './chain.js';
import { closeTls, negotiate } from './wire.js';

export interface RotationFinding {
  readonly level: 'ok' | 'warn' | 'fail';
  readonly code: string;
  readonly message: string;
}

export interface RotationReport {
  readonly ready: boolean;
  /** The client does not verify the server at all: rotations cannot break it (and it is not protected either). */
  readonly unaffected: boolean;
  readonly store: {
    readonly label: string;
    readonly roots: readonly string[];
    readonly intermediates: readonly string[];
    readonly leaves: readonly string[];
  };
  readonly chain: readonly string[];
  readonly findings: readonly RotationFinding[];
}

async function issues(issuer: x509.X509Certificate, subject: x509.X509Certificate): Promise<boolean> {
  return likelyIssued(issuer, subject) && (await signatureVerifies(issuer, subject));
}

const isAzureFamily = (name: string) => /DigiCert|Microsoft|Baltimore/i.test(name);

export async function rotation(
  input: string,
  opts: { roots?: string | undefined; env?: Environment; homedir?: string; timeoutMs?: number } = {},
): Promise<RotationReport> {
  const env = opts.env ?? process.env;
  const findings: RotationFinding[] = [];
  const add = (level: RotationFinding['level'], code: string, message: string) =>
    findings.push({ level, code, message });
  let plan: ReturnType<typeof resolve>;
  try {
    plan = resolve(input, env, opts.homedir === undefined ? {} : { homedir: opts.homedir });
  } catch (err) {
    const message = err instanceof ClientError ? err.libpqMessage.trimEnd() : (err as Error).message;
    return {
      ready: false,
      unaffected: false,
      store: { label: '', roots: [], intermediates: [], leaves: [] },
      chain: [],
      findings: [{ level: 'fail', code: 'invalid-parameters', message }],
    };
  }
  const material = loadTlsMaterial(plan);
  const label = plan.ssl.rootCert || '~/.postgresql/root.crt';
  const empty = { label, roots: [] as string[], intermediates: [] as string[], leaves: [] as string[] };
  if (!material.ok) {
    add('fail', 'trust-store-unusable', material.message.split('\n')[0]!);
    return { ready: false, unaffected: false, store: empty, chain: [], findings };
  }
  if (!material.value.verify) {
    add(
      'ok',
      'not-verifying',
      `sslmode=${plan.ssl.mode} without a root certificate file does not verify the server: rotations cannot break this client — but nothing stops an impersonator either; use sslmode=verify-full`,
    );
    return { ready: true, unaffected: true, store: empty, chain: [], findings };
  }
  const store = splitPem((material.value.ca ?? []).join('\n'))
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => toX509(b.der));
  const roots: x509.X509Certificate[] = [];
  const intermediates: x509.X509Certificate[] = [];
  const leaves: x509.X509Certificate[] = [];
  for (const c of store) {
    if (await isSelfSigned(c)) roots.push(c);
    else if (facts(c).ca) intermediates.push(c);
    else leaves.push(c);
  }
  const storeSummary = {
    label: material.value.rootSource ?? label,
    roots: roots.map((c) => c.subject),
    intermediates: intermediates.map((c) => c.subject),
    leaves: leaves.map((c) => c.subject),
  };

  // Today's chain.
  const target = plan.hosts.find((h) => h.kind !== 'socket');
  let chain: x509.X509Certificate[] = [];
  if (target) {
    const host = target.hostaddr || target.host;
    const r = await negotiate(
      { host, port: Number(target.port || 5432) },
      {
        capture: true,
        direct: plan.ssl.negotiation === 'direct',
        ...(target.host && isIP(target.host) === 0 ? { servername: target.host } : {}),
      },
      opts.timeoutMs ?? 10_000,
    );
    if (r.stage === 'done') {
      closeTls(r.socket);
      chain = r.peerCertificates.map(toX509);
      const v = await verifyAgainstStore(r.peerCertificates, { label, path: label, exists: true, certificates: store });
      if (v.verified) add('ok', 'verifies-today', 'the chain the server sends today verifies against this store');
      else
        add(
          'fail',
          'fails-today',
          `the chain the server sends today does not verify: ${v.error?.reason ?? 'unknown reason'}`,
        );
    } else add('warn', 'server-unreachable', "could not fetch the server's chain; judging the store alone");
  }

  // Pinning: intermediates or server certificates in the store.
  for (const c of leaves) {
    add(
      'fail',
      'pinned-server-certificate',
      `the store pins a server certificate ("${c.subject}"): the connection breaks at the server's next certificate renewal; keep only root CAs`,
    );
  }
  for (const c of intermediates) {
    const rootPresent = (await Promise.all(roots.map((r) => issues(r, c)))).some(Boolean);
    if (rootPresent)
      add(
        'warn',
        'pinned-intermediate',
        `the store also holds the intermediate "${c.subject}": harmless while its root is there, but remove it — intermediates rotate`,
      );
    else
      add(
        'fail',
        'pinned-intermediate',
        `the store pins the intermediate "${c.subject}" without its root ("${c.issuer}"): the connection breaks when the server moves to another intermediate (Azure rotates them); put the root there instead`,
      );
  }

  // The root the chain leads to must be in the store (not only an intermediate).
  const top = chain[chain.length - 1];
  if (top) {
    let anchored = false;
    for (const r of roots) if (facts(r).sha256 === facts(top).sha256 || (await issues(r, top))) anchored = true;
    if (!anchored && chain.length > 0)
      add(
        'fail',
        'root-missing',
        `the store has no root CA for today's chain (top: "${top.subject}", issued by "${top.issuer}")`,
      );
  }

  // Azure: the three roots the documentation asks verify-ca/verify-full clients to deploy. Each finding says which
  // store was looked at — this client's, not Node's: libpq reads sslrootcert (a file, or the system store for
  // sslrootcert=system). Whether Node's bundled store has the root is a separate fact, reported as one, because
  // Node's list changes between releases (DigiCert Global Root CA left it after Node 20).
  const azure = chain.some((c) => isAzureFamily(c.issuer)) || roots.some((r) => isAzureFamily(r.subject));
  if (azure) {
    const have = new Set(roots.map((r) => facts(r).sha256));
    const systemFile = material.value.rootSource === 'system' ? undefined : material.value.rootSource;
    const where = describeSource(
      plan.ssl.rootCert === 'system'
        ? { source: 'system', ...(systemFile ? { file: systemFile } : {}) }
        : { source: 'file', file: storeSummary.label },
    );
    for (const known of AZURE_ROOTS) {
      if (have.has(known.sha256)) add('ok', 'azure-root-present', `${known.name} is in this client's store, ${where}`);
      else
        add(
          'fail',
          'azure-root-missing',
          `${known.name} is not in this client's store, ${where}: Azure servers can move to it (root migration, read replicas)`,
        );
      const gap = nodeStoreGap(known);
      if (gap) add('warn', 'azure-root-not-in-node-store', gap);
    }
  }

  // Roots (or intermediates) the server may move to, from --roots.
  if (opts.roots) {
    const future = parseCertificates(readFileSync(opts.roots), opts.roots);
    const have = new Set(roots.map((r) => facts(r).sha256));
    for (const f of future) {
      if (await isSelfSigned(f)) {
        if (have.has(facts(f).sha256)) add('ok', 'future-root-present', `"${f.subject}" is in the store`);
        else
          add(
            'fail',
            'future-root-missing',
            `"${f.subject}" is not in the store: a chain moving to it will not verify`,
          );
      } else {
        let anchored = false;
        for (const r of roots) if (await issues(r, f)) anchored = true;
        if (anchored) add('ok', 'future-intermediate-anchored', `"${f.subject}" chains to a root in the store`);
        else
          add(
            'fail',
            'future-intermediate-unanchored',
            `"${f.subject}" does not chain to any root in the store (its issuer "${f.issuer}" is missing)`,
          );
      }
    }
  }

  const ready = !findings.some((f) => f.level === 'fail');
  return { ready, unaffected: false, store: storeSummary, chain: chain.map((c) => c.subject), findings };
}
