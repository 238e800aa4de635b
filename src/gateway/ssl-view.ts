/**
 * The client's TLS facts, visible to SQL in the backend (client_tls_facts_to_backend). Behind a gateway the backend's
 * own pg_stat_ssl, ssl_is_used() and client_addr describe the gateway→backend hop, not the client. Two ways to get
 * the client's truth there:
 *  - startup settings: each relayed session's StartupMessage carries pgtls.ssl_version, pgtls.client_addr, … as
 *    custom (placeholder) settings, read with current_setting('pgtls.ssl_version') — per session, no lag;
 *  - the view: the gateway keeps an UNLOGGED table keyed by backend pid over its own backend connection, and
 *    pgtls.pg_stat_ssl (pg_stat_ssl's columns plus client_addr, client_port, sni, negotiation) and
 *    pgtls.ssl_is_used() read it, so the source documents' queries work with `pgtls.` in front.
 * Writes never slow the relay: they are queued (bounded, coalesced per pid), batched, and dropped and counted when
 * the queue is full.
 */
import { PgtlsError } from '../errors.js';
import type { ConnectionRecord } from './runtime.js';
import type { TlsFacts } from './transport.js';

export const ERR_SSL_VIEW = 'PGTLS_ERR_SSL_VIEW';
export const ERR_SSL_VIEW_PRIVILEGE = 'PGTLS_ERR_SSL_VIEW_PRIVILEGE';

/** A minimal query function over a backend connection (node-postgres: `(sql, params) => client.query(sql, params).then(r => r.rows)`). */
export type QueryFn = (sql: string, params?: readonly unknown[]) => Promise<readonly Record<string, unknown>[]>;

/** The prefix of the gateway's custom settings; clients must not be able to send their own (see stripClientFacts). */
export const FACTS_PREFIX = 'pgtls.';

/** pg_stat_ssl keeps DNs in char[NAMEDATALEN]; the view and settings keep them whole (they are text). */
function decimalSerial(hex: string): string {
  return BigInt(`0x${hex.replace(/:/g, '')}`).toString(10);
}

/** The facts of one session as the table row / settings carry them. */
export interface SessionSslFacts {
  readonly ssl: boolean;
  readonly version: string | null;
  readonly cipher: string | null;
  readonly bits: number | null;
  readonly client_dn: string | null;
  /** Decimal, as pg_stat_ssl.client_serial. */
  readonly client_serial: string | null;
  readonly issuer_dn: string | null;
  readonly client_addr: string | null;
  readonly client_port: number | null;
  readonly sni: string | null;
  readonly negotiation: ConnectionRecord['negotiation'];
}

export function sessionSslFacts(facts: TlsFacts | undefined, record: ConnectionRecord): SessionSslFacts {
  const tls = facts !== undefined && record.negotiation !== 'plaintext';
  const cert = tls ? record.client_cert : undefined;
  // A Unix-socket client has no address; client_addr is NULL there, as in pg_stat_activity.
  const addr = record.client === '[local]' || record.client === '' ? null : record.client;
  return {
    ssl: tls,
    version: tls ? facts.version : null,
    cipher: tls ? facts.cipher : null,
    bits: tls ? facts.bits : null,
    client_dn: cert ? cert.subject : null,
    client_serial: cert ? decimalSerial(cert.serial) : null,
    issuer_dn: cert ? cert.issuer : null,
    client_addr: addr,
    client_port: addr === null ? null : record.client_port,
    sni: tls ? (facts.sni ?? record.sni ?? null) : null,
    negotiation: record.negotiation,
  };
}

/**
 * The custom settings to add to the StartupMessage sent to the backend. Every key is always present (empty when it
 * does not apply), so current_setting('pgtls.client_dn') never fails on a session that came through the gateway.
 */
export function tlsFactsAsStartupOptions(facts: TlsFacts | undefined, record: ConnectionRecord): [string, string][] {
  const f = sessionSslFacts(facts, record);
  // A startup parameter value is a NUL-terminated string: a NUL inside cannot be sent.
  const v = (x: string | number | null) => (x === null ? '' : String(x).replace(/\0/g, ''));
  return [
    ['pgtls.ssl', f.ssl ? 'on' : 'off'],
    ['pgtls.ssl_version', v(f.version)],
    ['pgtls.ssl_cipher', v(f.cipher)],
    ['pgtls.ssl_bits', v(f.bits)],
    ['pgtls.ssl_group', v(f.ssl ? (facts?.group ?? null) : null)],
    ['pgtls.client_dn', v(f.client_dn)],
    ['pgtls.client_serial', v(f.client_serial)],
    ['pgtls.issuer_dn', v(f.issuer_dn)],
    ['pgtls.client_addr', v(f.client_addr)],
    ['pgtls.client_port', v(f.client_port)],
    ['pgtls.sni', v(f.sni)],
    ['pgtls.negotiation', f.negotiation],
  ];
}

/**
 * Remove the client's own pgtls.* startup options, so a client cannot claim TLS facts it does not have. Setting
 * names are case-insensitive in PostgreSQL, so is the match.
 */
export function stripClientFacts(params: readonly (readonly [string, string])[]): [string, string][] {
  return params.filter(([k]) => !k.toLowerCase().startsWith(FACTS_PREFIX)).map(([k, val]) => [k, val]);
}

/**
 * The DDL, also printed for a DBA who prefers to run it (docs/operator.md). The table is UNLOGGED (no WAL: it is
 * rebuilt by the gateway and meaningless after a crash) and readable by everyone, writable only by its owner (the
 * gateway's role). The view joins pg_stat_activity so rows of ended sessions never show, and — for a reader who may
 * see backend_start — a row older than the backend with that pid (a reused pid) does not either.
 */
export const SSL_VIEW_DDL = `CREATE SCHEMA IF NOT EXISTS pgtls;
CREATE UNLOGGED TABLE IF NOT EXISTS pgtls.sessions (
  pid integer PRIMARY KEY,
  ssl boolean NOT NULL,
  version text,
  cipher text,
  bits integer,
  client_dn text,
  client_serial numeric,
  issuer_dn text,
  client_addr inet,
  client_port integer,
  sni text,
  negotiation text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE VIEW pgtls.pg_stat_ssl AS
  SELECT s.pid, s.ssl, s.version, s.cipher, s.bits, s.client_dn, s.client_serial, s.issuer_dn,
         s.client_addr, s.client_port, s.sni, s.negotiation
  FROM pgtls.sessions s
  JOIN pg_catalog.pg_stat_activity a ON a.pid = s.pid
  WHERE a.backend_start IS NULL OR a.backend_start <= s.recorded_at;
CREATE OR REPLACE FUNCTION pgtls.ssl_is_used() RETURNS boolean
  LANGUAGE sql STABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT CASE
      WHEN EXISTS (SELECT 1 FROM pgtls.pg_stat_ssl WHERE pid = pg_backend_pid())
        THEN (SELECT ssl FROM pgtls.pg_stat_ssl WHERE pid = pg_backend_pid())
      ELSE coalesce((SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), false)
    END
  $$;
REVOKE ALL ON pgtls.sessions FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtls TO PUBLIC;
GRANT SELECT ON pgtls.sessions, pgtls.pg_stat_ssl TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgtls.ssl_is_used() TO PUBLIC;
`;

export interface SslViewOptions {
  /** Most pending writes (distinct pids); beyond it new sessions are dropped and counted. Default 10000. */
  readonly maxQueue?: number;
  /** Most rows per statement. Default 500. */
  readonly batchSize?: number;
  /** How long a write may wait for its batch. Default 100 ms. */
  readonly flushIntervalMs?: number;
  /** A batch failed (the backend connection broke, …): its writes are dropped and counted; the gateway logs this. */
  readonly onError?: (err: Error) => void;
}

type Op = { kind: 'upsert'; facts: SessionSslFacts } | { kind: 'delete' };

const INSERT = `INSERT INTO pgtls.sessions AS t
  (pid, ssl, version, cipher, bits, client_dn, client_serial, issuer_dn, client_addr, client_port, sni, negotiation)
  SELECT pid, ssl, version, cipher, bits, client_dn, client_serial, issuer_dn, client_addr, client_port, sni, negotiation
  FROM jsonb_to_recordset($1::jsonb) AS r(pid integer, ssl boolean, version text, cipher text, bits integer,
    client_dn text, client_serial numeric, issuer_dn text, client_addr inet, client_port integer, sni text,
    negotiation text)
  ON CONFLICT (pid) DO UPDATE SET ssl = excluded.ssl, version = excluded.version, cipher = excluded.cipher,
    bits = excluded.bits, client_dn = excluded.client_dn, client_serial = excluded.client_serial,
    issuer_dn = excluded.issuer_dn, client_addr = excluded.client_addr, client_port = excluded.client_port,
    sni = excluded.sni, negotiation = excluded.negotiation, recorded_at = now()`;
const DELETE = 'DELETE FROM pgtls.sessions WHERE pid = ANY($1::integer[])';

/** Keeps pgtls.sessions current from the gateway's own backend connection. */
export class SslViewWriter {
  readonly #query: QueryFn;
  readonly #maxQueue: number;
  readonly #batchSize: number;
  readonly #interval: number;
  readonly #onError: (err: Error) => void;
  /** Pending operations, coalesced: the last one per pid wins. */
  readonly #pending = new Map<number, Op>();
  /** Pids whose row is (or is being) in the table, so an end before the first write costs nothing. */
  readonly #written = new Set<number>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #dropped = 0;
  #writes = 0;
  #closed = false;

  constructor(query: QueryFn, opts: SslViewOptions = {}) {
    this.#query = query;
    this.#maxQueue = opts.maxQueue ?? 10_000;
    this.#batchSize = opts.batchSize ?? 500;
    this.#interval = opts.flushIntervalMs ?? 100;
    this.#onError = opts.onError ?? (() => undefined);
  }

  /**
   * Create the schema, table, view and function (idempotent), then remove rows of sessions that no longer exist
   * (left by a gateway that stopped). Throws ERR_SSL_VIEW_PRIVILEGE, saying what to grant, when the role may not.
   */
  async install(): Promise<void> {
    try {
      const have = await this.#query(
        `SELECT to_regclass('pgtls.sessions') IS NOT NULL AS t, to_regclass('pgtls.pg_stat_ssl') IS NOT NULL AS v,
                to_regprocedure('pgtls.ssl_is_used()') IS NOT NULL AS f, current_database() AS db, current_user AS who`,
      );
      const h = have[0] ?? {};
      if (!(h.t && h.v && h.f)) {
        await this.#query(`BEGIN;\n${SSL_VIEW_DDL}COMMIT;`);
      }
      await this.#query(
        'DELETE FROM pgtls.sessions WHERE pid NOT IN (SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid IS NOT NULL)',
      );
    } catch (e) {
      await this.#query('ROLLBACK').catch(() => undefined);
      const code = (e as { code?: string }).code;
      if (code === '42501') {
        throw new PgtlsError(
          ERR_SSL_VIEW_PRIVILEGE,
          `client_tls_facts_to_backend: the gateway's backend role may not create or write the pgtls schema: ${(e as Error).message}`,
          {
            cause: e,
            details: {
              hint: 'GRANT CREATE ON DATABASE <db> TO <gateway role>; or have the database owner run the DDL in docs/operator.md and make the gateway role the owner of pgtls.sessions.',
            },
          },
        );
      }
      throw new PgtlsError(
        ERR_SSL_VIEW,
        `client_tls_facts_to_backend: could not install the pgtls view: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }

  /** A session was relayed to backend `pid`. Never blocks; returns false when the write was dropped (queue full). */
  sessionStarted(pid: number, facts: SessionSslFacts): boolean {
    if (this.#closed) return false;
    if (!this.#pending.has(pid) && this.#pending.size >= this.#maxQueue) {
      this.#dropped++;
      return false;
    }
    this.#pending.set(pid, { kind: 'upsert', facts });
    this.#schedule();
    return true;
  }

  /** The session on backend `pid` ended. Always queued (it frees a row), even beyond maxQueue. */
  sessionEnded(pid: number): void {
    if (this.#closed) return;
    if (!this.#written.has(pid)) {
      this.#pending.delete(pid);
      return;
    }
    this.#pending.set(pid, { kind: 'delete' });
    this.#schedule();
  }

  /** Writes dropped because the queue was full or a batch failed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Statements sent so far (for tests and metrics). */
  get writes(): number {
    return this.#writes;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Write everything queued now. */
  async flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    // One flush at a time, in order; loop until the queue is empty (bounded: each round takes ≥ 1 entry).
    for (let round = 0; round < 1_000_000 && (this.#flushing || this.#pending.size > 0); round++) {
      if (this.#flushing) {
        await this.#flushing;
        continue;
      }
      this.#flushing = this.#flushOnce().finally(() => {
        this.#flushing = undefined;
      });
    }
  }

  /** Flush what is queued and stop accepting writes. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#interval);
    this.#timer.unref();
  }

  async #flushOnce(): Promise<void> {
    const upserts: Record<string, unknown>[] = [];
    const deletes: number[] = [];
    for (const [pid, op] of this.#pending) {
      if (upserts.length + deletes.length >= this.#batchSize) break;
      this.#pending.delete(pid);
      if (op.kind === 'upsert') {
        upserts.push({ pid, ...op.facts });
        this.#written.add(pid);
      } else {
        deletes.push(pid);
        this.#written.delete(pid);
      }
    }
    try {
      if (deletes.length > 0) {
        this.#writes++;
        await this.#query(DELETE, [deletes]);
      }
      if (upserts.length > 0) {
        this.#writes++;
        await this.#query(INSERT, [JSON.stringify(upserts)]);
      }
    } catch (e) {
      this.#dropped += upserts.length + deletes.length;
      this.#onError(e as Error);
    }
  }
}
