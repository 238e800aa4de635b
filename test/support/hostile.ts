/**
 * Raw hostile peers for the fuzzer and slowloris tests: a socket that records what the server sent and whether the
 * server closed it, with every wait bounded. Clients come from rotating loopback source addresses (127.0.x.y) so
 * 100,000 short connections do not run out of ephemeral ports or collide with TIME_WAIT entries.
 */
import { type Socket, connect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import pg from 'pg';
import { SUPERUSER_PASSWORD } from './postgres.js';
import { errorIn, startupPacket } from './raw.js';

let nextSource = 0;
/** 127.0.1.1 … 127.0.4.250: a thousand source addresses, each with its own ephemeral port range. */
function sourceAddress(): string {
  const i = nextSource++ % 1000;
  return `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

export class Peer {
  readonly chunks: Buffer[] = [];
  /** The server ended or reset the connection (as opposed to us destroying it). */
  serverClosed = false;
  private closed = false;
  private waiters: (() => void)[] = [];

  constructor(public sock: Socket | TLSSocket) {
    this.watch(sock);
  }

  private watch(s: Socket | TLSSocket): void {
    s.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.wake();
    });
    s.on('end', () => {
      this.serverClosed = true;
      this.wake();
    });
    s.on('error', () => {
      this.serverClosed = true;
      this.wake();
    });
    s.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get data(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
  }

  /** Wait until `pred` holds, the connection closes, or `ms` pass; returns whether `pred` held. */
  until(pred: () => boolean, ms: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(pred()), ms);
      const check = () => {
        if (pred() || this.closed) {
          clearTimeout(t);
          resolve(pred());
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** Wait for the server to close (up to `ms`); destroy the socket either way. Returns whether the server closed it. */
  async closedByServer(ms: number): Promise<boolean> {
    await this.until(() => this.serverClosed, ms);
    const by = this.serverClosed;
    this.sock.destroy();
    return by;
  }

  /** Upgrade to TLS on the same socket (after the server's 'S'); resolves once the handshake is done, or throws. */
  async startTls(): Promise<void> {
    const t = tlsConnect({ socket: this.sock as Socket, servername: 'localhost', rejectUnauthorized: false });
    this.chunks.length = 0;
    this.serverClosed = false;
    this.sock = t;
    this.watch(t);
    await new Promise<void>((resolve, reject) => {
      t.once('secureConnect', () => resolve());
      t.once('error', reject);
      t.once('close', () => reject(new Error('closed during the TLS handshake')));
    });
  }
}

export function openPeer(port: number, ms = 5000): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: sourceAddress() });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('connect timeout'));
    }, ms);
    s.once('connect', () => {
      clearTimeout(t);
      s.setNoDelay(true);
      resolve(new Peer(s));
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/**
 * Run `count` tasks with at most `concurrency` in flight; task i gets its index. No task starts after `deadline`
 * (epoch ms), so a slow machine shortens the run instead of overrunning the test runner's timeout. Returns how many
 * tasks started.
 */
export async function pool(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
  onError: (err: Error) => void = () => undefined,
  deadline = Number.POSITIVE_INFINITY,
): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) await task(next++).catch(onError);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return next;
}

/**
 * A real session that keeps running `select 1` while hostile traffic goes on: every failure is kept, so the test can
 * say "0 canary failures" with the evidence when it is not.
 */
export class Canary {
  ok = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  private client: pg.Client;

  constructor(port: number, ca: string, everyMs = 200) {
    this.client = new pg.Client({
      host: 'localhost',
      port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      database: 'postgres',
      ssl: { ca, servername: 'localhost' },
    });
    this.client.on('error', (e) => this.failures.push(`client error: ${e.message}`));
    this.everyMs = everyMs;
  }
  private everyMs: number;

  async start(): Promise<void> {
    await this.client.connect();
    this.loop = (async () => {
      for (let i = 0; i < 10_000_000 && !this.stopped; i++) {
        try {
          const r = await this.client.query('select 1 as one');
          if (r.rows[0]?.one === 1) this.ok++;
          else this.failures.push(`unexpected answer ${JSON.stringify(r.rows)}`);
        } catch (e) {
          this.failures.push((e as Error).message);
          if (this.failures.length > 20) return;
        }
        await new Promise((r) => setTimeout(r, this.everyMs));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.client.end().catch(() => undefined);
  }
}

/** SSLRequest, TLS, StartupMessage, then wait for ReadyForQuery; the session stays open in `held`. */
export async function openSession(port: number, held: Peer[], user: string): Promise<string | undefined> {
  let p: Peer;
  try {
    p = await openPeer(port, 20_000);
  } catch (e) {
    return `connect: ${(e as Error).message}`;
  }
  p.sock.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  if (!(await p.until(() => p.data.length > 0, 20_000)) || p.data[0] !== 0x53) {
    p.sock.destroy();
    return 'no S to the SSLRequest';
  }
  try {
    await p.startTls();
  } catch (e) {
    return `TLS: ${(e as Error).message}`;
  }
  p.sock.write(startupPacket({ user, database: 'postgres' }));
  if (!(await p.until(() => loginOutcome(p.data) !== undefined, 30_000)) || loginOutcome(p.data) !== 'ready') {
    const outcome = loginOutcome(p.data);
    p.sock.destroy();
    return outcome ?? (p.serverClosed ? 'closed without an answer' : 'no ReadyForQuery');
  }
  p.chunks.length = 0; // keep nothing per idle session in this process
  held.push(p);
  return undefined;
}

/** Walk the backend messages of a login: 'ready' at ReadyForQuery, "SQLSTATE message" at an ErrorResponse. */
export function loginOutcome(d: Buffer): string | undefined {
  let at = 0;
  for (let i = 0; i < 1_000 && at + 5 <= d.length; i++) {
    const type = d[at]!;
    const len = d.readInt32BE(at + 1);
    if (len < 4 || at + 1 + len > d.length) return undefined;
    if (type === 0x5a) return 'ready';
    if (type === 0x45) {
      const e = errorIn(d.subarray(at, at + 1 + len));
      return `${e?.C} ${e?.M}`;
    }
    at += 1 + len;
  }
  return undefined;
}
