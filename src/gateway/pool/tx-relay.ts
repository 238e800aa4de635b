/**
 * Transaction pooling: a message-aware relay. The client's messages are framed and forwarded to a server borrowed
 * for the transaction; the server goes back to the pool at ReadyForQuery 'I' once every message sent to it has been
 * answered (a pipelined batch of Syncs is one unit, as PgBouncer's outstanding_requests list).
 *
 * To know which answer belongs to which request, the relay keeps a queue of what it sent, in order (Parse, Bind,
 * Describe, Execute, Close, Sync, Query), and answers it made up itself (ParseComplete for a statement already
 * prepared on this server, CloseComplete for a named statement the server keeps): a made-up answer is sent once
 * everything before it has been answered. After an ErrorResponse the backend skips to the next Sync, and so does the
 * queue. ParameterStatus from the backend updates the client's GUC values, which are SET on the next server if it
 * differs (PgBouncer's varcache).
 */
import type { Duplex } from 'node:stream';
import { PgtlsError } from '../../errors.js';
import { ERR_MESSAGE_LENGTH, MessageReader } from '../../protocol/framing.js';
import {
  BackendType,
  CLOSE_COMPLETE,
  FrontendType,
  PARSE_COMPLETE,
  decodeBind,
  decodeCommandTag,
  decodeParse,
  decodeTarget,
  encodeBind,
  encodeParse,
  encodeTarget,
} from '../../protocol/messages.js';
import { ClientGone } from './pool.js';
import type { ClientStatement } from './prepared.js';
import { MAX_BACKEND_MESSAGE, type ServerConnection } from './server-connection.js';

/** What a client may send in one message (PostgreSQL's PQ_LARGE_MESSAGE_LIMIT is 1 GiB). */
export const MAX_CLIENT_MESSAGE = 1 << 30;

type Entry =
  | { k: 'parse'; swallow: boolean; serverName?: string; clientName?: string }
  | { k: 'bind' | 'describe' | 'execute' | 'sync' | 'query' }
  | { k: 'close'; swallow: boolean }
  | { k: 'fake'; msg: Buffer };

/** What the relay needs from the session around it. */
export interface TxHost {
  /**
   * A server for the next transaction, GUCs applied: at once when one is idle and ready, else a promise that rejects
   * when the client must be disconnected (it has been told why).
   */
  acquire(signal: ClientGone): ServerConnection | Promise<ServerConnection>;
  /** The transaction is over (clean) or the server is unusable (dirty). */
  release(server: ServerConnection, clean: boolean): void;
  /** A ParameterStatus reached the client: remember the value for the next server. */
  noteClientParam(name: string, value: string): void;
  /** Send a FATAL the gateway built and close the client. */
  fatal(message: string, code: string): void;
  readonly statements: Map<string, ClientStatement>;
  nameFor(rest: Buffer): string;
  readonly maxPrepared: number;
}

export interface TxStats {
  bytesFromClient: number;
  bytesFromBackend: number;
  transactions: number;
}

export class TxRelay {
  readonly #clientReader = new MessageReader(MAX_CLIENT_MESSAGE);
  #server: ServerConnection | undefined;
  #queue: Entry[] = [];
  #toServer: Buffer[] = [];
  #toClient: Buffer[] = [];
  #acquiring = false;
  #ended = false;
  #desync = false;
  #lastStatus = 'I';
  /** The chunk being read in place: frames that are consecutive views of it are written without a copy. */
  #chunk: Buffer | undefined;
  /** Aborted when the client leaves: a wait for a server ends with it. */
  readonly #gone = new ClientGone();
  readonly stats: TxStats = { bytesFromClient: 0, bytesFromBackend: 0, transactions: 0 };
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  readonly #onClientData = (d: Buffer) => {
    this.stats.bytesFromClient += d.length;
    if (this.#acquiring || this.#clientReader.buffered > 0) {
      this.#clientReader.push(d);
      this.#pumpClient();
      return;
    }
    if (!this.#server) {
      if (d.length === 5 && d[0] === FrontendType.Terminate) {
        this.#end(); // goodbye between transactions: no server needed for that
        return;
      }
      // Between transactions: the next one starts with this chunk.
      const got = this.host.acquire(this.#gone);
      if (got instanceof Promise) {
        this.#clientReader.push(d);
        this.#wait(got);
        return;
      }
      this.#attach(got);
    }
    // The common case: a server is attached and the chunk starts a message. Read it in place.
    this.#chunk = d;
    try {
      eachMessage(this.#clientReader, d, MAX_CLIENT_MESSAGE, (type, body, frame) =>
        this.#fromClient(type, body, frame),
      );
    } catch {
      this.host.fatal('invalid message length', '08P01');
      this.#end();
      return;
    } finally {
      this.#flushToServer();
      this.#chunk = undefined;
    }
  };
  readonly #onServerData = (d: Buffer) => {
    this.stats.bytesFromBackend += d.length;
    this.#fromServer(d);
  };
  readonly #onServerGone = () => {
    // The backend died under the client (restart, terminate): as PgBouncer, the client goes too.
    const s = this.#server;
    if (!s) return;
    this.#detach(false);
    this.#end();
  };
  readonly #onClientDrain = () => this.#server?.socket.resume();
  readonly #onServerDrain = () => this.client.resume();

  constructor(
    private readonly client: Duplex,
    private readonly host: TxHost,
  ) {
    this.#done = new Promise((r) => {
      this.#resolveDone = r;
    });
  }

  /** Relay until the client leaves; the server in use at that moment is returned or discarded. */
  run(pipelined: Buffer): Promise<void> {
    const c = this.client;
    c.on('data', this.#onClientData);
    c.once('close', () => this.#end());
    c.once('end', () => this.#end());
    c.on('drain', this.#onClientDrain);
    if (c.destroyed) this.#end();
    else {
      if (pipelined.length > 0) this.#onClientData(pipelined);
      c.resume();
    }
    return this.#done;
  }

  /** The server running this client's transaction now (for a CancelRequest), if any. */
  get server(): ServerConnection | undefined {
    return this.#server;
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#gone.fire();
    this.client.off('data', this.#onClientData);
    this.client.off('drain', this.#onClientDrain);
    // A transaction left open, an answer still due or bytes not yet written: the server cannot be reused
    // (PgBouncer: "client disconnect while server was not ready" / "… with query in progress").
    if (this.#server) this.#detach(this.#clean());
    // Let what was written (an ErrorResponse, a FATAL) reach the client before closing.
    const c = this.client;
    if (!c.destroyed) {
      c.once('finish', () => c.destroy());
      c.end();
      setTimeout(() => c.destroy(), 5000).unref();
    }
    this.#resolveDone();
  }

  #clean(): boolean {
    const s = this.#server;
    return (
      !!s && !this.#desync && this.#queue.length === 0 && this.#lastStatus === 'I' && s.socket.writableLength === 0
    );
  }

  #attach(s: ServerConnection): void {
    this.#server = s;
    this.#queue = [];
    this.#lastStatus = 'I';
    s.socket.on('data', this.#onServerData);
    s.socket.once('close', this.#onServerGone);
    s.socket.on('drain', this.#onServerDrain);
    s.socket.resume();
  }

  #detach(clean: boolean): void {
    const s = this.#server;
    if (!s) return;
    this.#server = undefined;
    s.socket.off('data', this.#onServerData);
    s.socket.off('close', this.#onServerGone);
    s.socket.off('drain', this.#onServerDrain);
    s.socket.pause();
    this.stats.transactions++;
    this.host.release(s, clean && !s.broken);
  }

  /** Handle client messages until one needs a server that is not there yet. */
  /** No server was idle: stop reading the client until one comes (or the client is refused). */
  #wait(got: Promise<ServerConnection>): void {
    this.#acquiring = true;
    this.client.pause();
    got.then(
      (s) => {
        this.#acquiring = false;
        if (this.#ended) {
          this.host.release(s, true);
          return;
        }
        this.#attach(s);
        this.client.resume();
        this.#pumpClient();
      },
      () => {
        this.#acquiring = false;
        this.#end();
      },
    );
  }

  #pumpClient(): void {
    if (this.#acquiring || this.#ended) return;
    try {
      for (;;) {
        if (this.#clientReader.buffered === 0) break;
        if (!this.#server) {
          // A message is waiting (complete or not): get a server first, reading no more meanwhile.
          const got = this.host.acquire(this.#gone);
          if (!(got instanceof Promise)) {
            this.#attach(got);
            continue;
          }
          this.#wait(got);
          return;
        }
        const m = this.#clientReader.next();
        if (!m) break;
        if (!this.#fromClient(m.type, m.body, m.frame)) return;
      }
    } catch {
      this.host.fatal('invalid message length', '08P01');
      this.#end();
      return;
    } finally {
      this.#flushToServer();
    }
  }

  #flushToServer(): void {
    const s = this.#server;
    if (this.#toServer.length === 0 || !s) return;
    const out = joinFrames(this.#toServer, this.#chunk);
    if (!s.socket.write(out)) this.client.pause();
  }

  /** Queue bytes for the server; flushed (copied) before the client's reader sees its next chunk. */
  #send(b: Buffer): void {
    this.#toServer.push(b);
  }

  /** Returns false when the relay ended (Terminate, a FATAL). */
  #fromClient(type: number, body: Buffer, frame: Buffer): boolean {
    const h = this.host;
    const track = h.maxPrepared > 0;
    switch (type) {
      case FrontendType.Terminate:
        this.#flushToServer();
        this.#end();
        return false;
      case FrontendType.Sync:
        this.#queue.push({ k: 'sync' });
        break;
      case FrontendType.Query:
      case FrontendType.FunctionCall:
        this.#queue.push({ k: 'query' });
        break;
      case FrontendType.Execute:
        this.#queue.push({ k: 'execute' });
        break;
      case FrontendType.Parse: {
        const p = track ? decodeParse(body) : undefined;
        if (!p || p.name === '') {
          this.#queue.push({ k: 'parse', swallow: false });
          break;
        }
        if (h.statements.has(p.name)) {
          // PgBouncer disconnects here too (prepare.c): a client re-using a name it did not Close is broken.
          h.fatal('prepared statement name is already in use', '08P01');
          this.#desync = true;
          this.#end();
          return false;
        }
        const st: ClientStatement = { serverName: h.nameFor(p.rest), rest: Buffer.from(p.rest) };
        h.statements.set(p.name, st);
        if (this.#server!.prepared.has(st.serverName)) {
          this.#touch(st.serverName);
          this.#fake(PARSE_COMPLETE);
        } else {
          this.#prepare(st, false, p.name);
        }
        return true;
      }
      case FrontendType.Bind: {
        const b = track ? decodeBind(body) : undefined;
        const st = b && b.statement !== '' ? h.statements.get(b.statement) : undefined;
        if (b && st) {
          this.#ensure(st);
          this.#send(encodeBind(body, b, st.serverName));
          this.#queue.push({ k: 'bind' });
          return true;
        }
        this.#queue.push({ k: 'bind' });
        break;
      }
      case FrontendType.Describe: {
        const t = track ? decodeTarget(body) : undefined;
        const st = t?.kind === 'S' && t.name !== '' ? h.statements.get(t.name) : undefined;
        if (st) {
          this.#ensure(st);
          this.#send(encodeTarget(FrontendType.Describe, 'S', st.serverName));
          this.#queue.push({ k: 'describe' });
          return true;
        }
        this.#queue.push({ k: 'describe' });
        break;
      }
      case FrontendType.Close: {
        const t = track ? decodeTarget(body) : undefined;
        if (t?.kind === 'S' && t.name !== '') {
          // The server keeps the statement for other clients; the client is told it is closed.
          h.statements.delete(t.name);
          this.#fake(CLOSE_COMPLETE);
          return true;
        }
        this.#queue.push({ k: 'close', swallow: false });
        break;
      }
      default:
        // Flush, CopyData, CopyDone, CopyFail: no answer of their own.
        break;
    }
    this.#send(frame);
    return true;
  }

  #fake(msg: Buffer): void {
    this.#queue.push({ k: 'fake', msg });
    this.#emitFakes();
    this.#flushToClient();
  }

  #touch(name: string): void {
    const p = this.#server!.prepared;
    p.delete(name);
    p.set(name, true);
  }

  /** The statement is needed on this server: prepare it there (its ParseComplete swallowed) unless it is. */
  #ensure(st: ClientStatement): void {
    if (this.#server!.prepared.has(st.serverName)) this.#touch(st.serverName);
    else this.#prepare(st, true, undefined);
  }

  #prepare(st: ClientStatement, swallow: boolean, clientName: string | undefined): void {
    const s = this.#server!;
    // Evict least recently used statements beyond max_prepared_statements (their CloseComplete swallowed).
    for (const oldest of s.prepared.keys()) {
      if (s.prepared.size < this.host.maxPrepared) break;
      s.prepared.delete(oldest);
      this.#send(encodeTarget(FrontendType.Close, 'S', oldest));
      this.#queue.push({ k: 'close', swallow: true });
    }
    // Counted as prepared now, so that a Bind pipelined right behind does not prepare it twice; undone on error.
    s.prepared.set(st.serverName, true);
    this.#send(encodeParse(st.serverName, st.rest));
    this.#queue.push({
      k: 'parse',
      swallow,
      serverName: st.serverName,
      ...(clientName !== undefined ? { clientName } : {}),
    });
  }

  #fromServer(d: Buffer): void {
    const s = this.#server!;
    let release = false;
    const fromReader = s.reader.buffered > 0;
    try {
      eachMessage(s.reader, d, MAX_BACKEND_MESSAGE, (type, body, frame) => {
        if (this.#fromServerMessage(s, type, body)) this.#toClient.push(frame);
        this.#emitFakes();
        if (type === BackendType.ReadyForQuery) {
          this.#lastStatus = String.fromCharCode(body[0] ?? 0);
          if (this.#lastStatus === 'I' && this.#queue.length === 0) {
            release = true;
            return false;
          }
        }
        return true;
      });
      // Bytes after the ReadyForQuery that ends the transaction belong to no one: the server is out of step.
      if (release && s.reader.buffered > 0) this.#desync = true;
    } catch {
      this.#desync = true;
      release = true;
    }
    this.#flushToClient(fromReader ? undefined : d);
    if (release) {
      this.#detach(!this.#desync);
      if (this.#desync) this.#end();
      // Messages the client sent meanwhile (paused on backpressure) get the next server.
      else this.#pumpClient();
    }
  }

  #flushToClient(chunk?: Buffer): void {
    if (this.#toClient.length === 0) return;
    const out = joinFrames(this.#toClient, chunk);
    if (!this.client.write(out)) this.#server?.socket.pause();
  }

  /** Returns whether the message is forwarded to the client. */
  #fromServerMessage(s: ServerConnection, type: number, body: Buffer): boolean {
    const q = this.#queue;
    const head = q[0];
    let forward = true;
    switch (type) {
      case BackendType.ParameterStatus: {
        const p = s.noteParameterStatus(body);
        if (p) this.host.noteClientParam(p.name, p.value);
        break;
      }
      case BackendType.ParseComplete:
        if (head?.k === 'parse') {
          forward = !head.swallow;
          q.shift();
        } else this.#desync = true;
        break;
      case BackendType.BindComplete:
        if (head?.k === 'bind') q.shift();
        else this.#desync = true;
        break;
      case BackendType.CloseComplete:
        if (head?.k === 'close') {
          forward = !head.swallow;
          q.shift();
        } else this.#desync = true;
        break;
      case BackendType.RowDescription:
      case BackendType.NoData:
        if (head?.k === 'describe') q.shift();
        break;
      case BackendType.CommandComplete:
      case BackendType.EmptyQueryResponse:
      case BackendType.PortalSuspended: {
        if (type === BackendType.CommandComplete) {
          const tag = decodeCommandTag(body);
          s.noteCommand(tag);
          // The client's statements went with DISCARD ALL / DEALLOCATE ALL (PgBouncer tracks the same two).
          if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') this.host.statements.clear();
        }
        if (head?.k === 'execute') q.shift();
        break;
      }
      case BackendType.ReadyForQuery:
        if (head?.k === 'sync' || head?.k === 'query') q.shift();
        else this.#desync = true;
        break;
      case BackendType.ErrorResponse:
        if (head && head.k !== 'sync' && head.k !== 'query') this.#skipToSync();
        break;
      default:
        break;
    }
    return forward;
  }

  /** After an error the backend ignores everything up to Sync: so do the expected answers. */
  #skipToSync(): void {
    const q = this.#queue;
    while (q.length > 0 && q[0]!.k !== 'sync' && q[0]!.k !== 'query') {
      const e = q.shift()!;
      if (e.k === 'parse' && e.serverName) {
        this.#server?.prepared.delete(e.serverName);
        if (e.clientName !== undefined && this.host.statements.get(e.clientName)?.serverName === e.serverName)
          this.host.statements.delete(e.clientName);
      }
    }
  }

  #emitFakes(): void {
    const q = this.#queue;
    while (q.length > 0 && q[0]!.k === 'fake') this.#toClient.push((q.shift() as { msg: Buffer }).msg);
  }
}

/**
 * Call `fn` for each complete message of `d`, in place when the reader holds nothing (frames are then views of `d`,
 * which the socket never reuses), through the reader otherwise; an incomplete tail, or what follows a message for
 * which `fn` returned false, is kept in the reader.
 */
function eachMessage(
  reader: MessageReader,
  d: Buffer,
  max: number,
  fn: (type: number, body: Buffer, frame: Buffer) => boolean,
): void {
  if (reader.buffered > 0) {
    reader.push(d);
    for (let m = reader.next(); m; m = reader.next()) if (!fn(m.type, m.body, m.frame)) return;
    return;
  }
  const n = d.length;
  let at = 0;
  while (n - at >= 5) {
    const len = d.readInt32BE(at + 1);
    if (len < 4 || len > max) {
      throw new PgtlsError(ERR_MESSAGE_LENGTH, `invalid message length ${len}`, { details: { length: len } });
    }
    const end = at + 1 + len;
    if (end > n) break;
    const go = fn(d[at]!, d.subarray(at + 5, end), d.subarray(at, end));
    at = end;
    if (!go) break;
  }
  if (at < n) reader.push(d.subarray(at));
}

/**
 * One buffer for a socket write: when the frames are consecutive views of `chunk` (nothing rewritten, nothing
 * made up), a view of it — no copy; otherwise a copy (views into a reader's buffer do not outlive its next push).
 */
function joinFrames(list: Buffer[], chunk: Buffer | undefined): Buffer {
  const first = list[0]!;
  let ok = chunk !== undefined && first.buffer === chunk.buffer;
  let next = first.byteOffset + first.length;
  for (let i = 1; ok && i < list.length; i++) {
    const b = list[i]!;
    ok = b.buffer === first.buffer && b.byteOffset === next;
    next += b.length;
  }
  const out = ok ? Buffer.from(first.buffer, first.byteOffset, next - first.byteOffset) : Buffer.concat(list);
  list.length = 0;
  return out;
}
