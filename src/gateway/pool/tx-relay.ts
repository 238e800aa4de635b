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
import { MessageReader } from '../../protocol/framing.js';
import {
  BackendType,
  CLOSE_COMPLETE,
  FrontendType,
  PARSE_COMPLETE,
  decodeBind,
  decodeParse,
  decodeTarget,
  encodeBind,
  encodeParse,
  encodeTarget,
} from '../../protocol/messages.js';
import {
  type LaneHandle,
  TX_BOUNDARY,
  TX_CLIENT_END,
  TX_WAIT_TIMEOUT,
  type TxHandback,
  type TxRelayPort,
} from '../transport.js';
import { type Entry, Expected } from './expected.js';
import { eachMessage, joinFrames } from './frames.js';
import type { ClientStatement } from './prepared.js';
import { MAX_BACKEND_MESSAGE, type ServerConnection } from './server-connection.js';
import { ClientGone } from './waiting.js';

/** What a client may send in one message (PostgreSQL's PQ_LARGE_MESSAGE_LIMIT is 1 GiB). */
export const MAX_CLIENT_MESSAGE = 1 << 30;

/** What a client may have sent, unanswered, while it waits for a server before the relay stops reading it. */
const WAIT_BUFFER_LIMIT = 1 << 20;

/** What the relay needs from the session around it. */
export interface TxHost {
  /**
   * A server for the next transaction, GUCs applied: returned at once when one is idle and ready; else undefined,
   * and `done` is called later (never before this returns) with the server, or with undefined when the client must
   * be disconnected (it has been told why).
   */
  acquire(signal: ClientGone, done: (server: ServerConnection | undefined) => void): ServerConnection | undefined;
  /** The transaction is over (clean) or the server is unusable (dirty). */
  release(server: ServerConnection, clean: boolean): void;
  /** A ParameterStatus reached the client: remember the value for the next server. */
  noteClientParam(name: string, value: string): void;
  /** Send a FATAL the gateway built and close the client. */
  fatal(message: string, code: string): void;
  readonly statements: Map<string, ClientStatement>;
  nameFor(rest: Buffer): string;
  readonly maxPrepared: number;
  /** The pool's native lane for this port (native/src/lane.h), if it has one. */
  lane(port: TxRelayPort): LaneHandle | undefined;
  serverById(id: number): ServerConnection | undefined;
  /** What is left of server_lifetime for a server (0: no limit). */
  lifetimeLeftMs(server: ServerConnection): number;
  /** The client's GUC signature: equal numbers mean equal values of every GUC the client has. */
  gucId(): number;
  /** The client waited query_wait_timeout in the lane: tell it why it is disconnected. */
  waitTimedOut(): void;
}

export interface TxStats {
  bytesFromClient: number;
  bytesFromBackend: number;
  transactions: number;
}

/**
 * Process-wide counters of the native transaction relay (tests and benchmarks read them): stretches relayed
 * natively, how many ended at a transaction boundary, and how many handed a message back to JavaScript (or ended).
 */
export const nativeTxCounters = {
  relays: 0,
  boundaries: 0,
  handbacks: 0,
  /** Boundaries the pool's lane handled without JavaScript (included in `boundaries`). */
  laneBoundaries: 0,
  /** The client left or said goodbye between transactions in the lane (not counted as handbacks). */
  laneEnds: 0,
  /** Clients the lane sent to the pool's acquire (no idle server it could give). */
  laneNeedServer: 0,
};

const KIND: Record<string, Entry> = {
  P: { k: 'parse', swallow: false },
  B: { k: 'bind' },
  D: { k: 'describe' },
  E: { k: 'execute' },
  S: { k: 'sync' },
  Q: { k: 'query' },
  C: { k: 'close', swallow: false },
};

export class TxRelay {
  readonly #clientReader = new MessageReader(MAX_CLIENT_MESSAGE);
  #server: ServerConnection | undefined;
  readonly #queue = new Expected();
  #toServer: Buffer[] = [];
  #toClient: Buffer[] = [];
  #acquiring = false;
  #ended = false;
  #desync = false;
  /** The native relay holds both sockets (the client's stream and the server's reads are stopped meanwhile). */
  #native = false;
  /**
   * The native relay runs in the pool's lane: it takes servers from the lane and gives them back between
   * transactions on its own, so #server is undefined meanwhile (the lane knows which one this client holds).
   */
  #inLane = false;

  /** The relay or the answer accounting lost track: the server cannot be reused, the client cannot go on. */
  get #outOfStep(): boolean {
    return this.#desync || this.#queue.desync;
  }
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
      // Waiting for a server: what the client sends meanwhile is kept, up to a bound (then it is not read).
      if (this.#acquiring && this.#clientReader.buffered > WAIT_BUFFER_LIMIT) this.client.pause();
      this.#pumpClient();
      return;
    }
    if (!this.#server) {
      if (d.length === 5 && d[0] === FrontendType.Terminate) {
        this.#end(); // goodbye between transactions: no server needed for that
        return;
      }
      // Between transactions: the next one starts with this chunk.
      const got = this.#request();
      if (!got) {
        this.#clientReader.push(d);
        return;
      }
      this.#attach(got);
    }
    // The common case: a server is attached and the chunk starts a message. Relay natively from here when the
    // transport can, else read it in place.
    if (this.native && this.#tryNative(d)) return;
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
  /** What the server attached to this relay delivers (ServerConnection.attach). */
  readonly #sink = {
    data: (d: Buffer) => {
      this.stats.bytesFromBackend += d.length;
      this.#fromServer(d);
    },
    gone: () => {
      // The backend died under the client (restart, terminate): as PgBouncer, the client goes too.
      if (!this.#server) return;
      this.#stopNative();
      this.#detach(false);
      this.#end();
    },
  };
  readonly #onClientDrain = () => this.#server?.socket.resume();
  /** The server's socket drained: the client, paused for it, may send again (only while that server is ours). */
  #waitingDrain: ServerConnection | undefined;
  readonly #onServerDrain = () => {
    this.#waitingDrain = undefined;
    this.client.resume();
  };

  constructor(
    private readonly client: Duplex,
    private readonly host: TxHost,
    /** The client session's native transaction relay, when its transport has one (TlsSession.txRelay). */
    private readonly native?: TxRelayPort,
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
    if (this.#native && this.#inLane) {
      const id = this.native!.laneServer();
      return id ? this.host.serverById(id) : undefined;
    }
    return this.#server;
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopNative();
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
      !!s &&
      !this.#native &&
      !this.#outOfStep &&
      this.#queue.length === 0 &&
      this.#lastStatus === 'I' &&
      s.socket.writableLength === 0
    );
  }

  #attach(s: ServerConnection): void {
    this.#server = s;
    this.#queue.reset();
    this.#lastStatus = 'I';
    s.attach(this.#sink);
  }

  #detach(clean: boolean): void {
    const s = this.#server;
    if (!s) return;
    this.#server = undefined;
    s.detach();
    if (this.#waitingDrain === s) {
      s.socket.off('drain', this.#onServerDrain);
      this.#waitingDrain = undefined;
      this.client.resume();
    }
    this.stats.transactions++;
    this.host.release(s, clean && !s.broken);
  }

  /**
   * Hand both sockets to the native relay, starting with `d`, when nothing is pending in JavaScript: no answer
   * expected (it keeps its own queue from empty), nothing buffered or queued in either direction.
   */
  #tryNative(d: Buffer): boolean {
    const port = this.native!;
    const s = this.#server;
    if (!s || this.#outOfStep || this.#queue.length > 0 || this.#toServer.length > 0 || this.#toClient.length > 0)
      return false;
    if (this.#clientReader.buffered > 0 || this.#waitingDrain || this.#acquiring) return false;
    const fd = s.nativeFd(port);
    if (fd === undefined || !s.suspend()) return false;
    const track = this.host.maxPrepared > 0;
    const lane = this.host.lane(port);
    if (lane) {
      // The server joins the lane; this relay no longer owns it (the lane hands it to the next client at the
      // boundary, and hands this client whichever server is free for its next transaction).
      s.detach();
      s.inLane = true;
      const h = this.host;
      s.laneGucId = h.gucId();
      const stmts = track ? this.#statementPairs() : undefined;
      const names = track ? s.preparedNames() : undefined;
      if (!port.startLane(lane, s.id, fd, h.lifetimeLeftMs(s), h.gucId(), d, track, stmts, names, this.#onNative)) {
        s.inLane = false;
        s.attach(this.#sink);
        s.resumeReads();
        return false;
      }
      this.#server = undefined;
      this.#inLane = true;
    } else if (!port.start(fd, d, track, this.#onNative)) {
      s.resumeReads();
      return false;
    }
    this.#native = true;
    nativeTxCounters.relays++;
    return true;
  }

  /** The client's named statements as NUL-ended (name, server name) pairs, for the lane's renames. */
  #statementPairs(): Buffer | undefined {
    const st = this.host.statements;
    if (st.size === 0) return undefined;
    let s = '';
    for (const [name, v] of st) s += `${name}\0${v.serverName}\0`;
    return Buffer.from(s);
  }

  /** #tryNative with what waits in the client's reader (put back when the native relay cannot start). */
  #nativeFromReader(): boolean {
    if (this.#clientReader.buffered === 0) return false;
    const rest = this.#clientReader.takeRemaining();
    if (this.#tryNative(rest)) return true;
    this.#clientReader.push(rest);
    return false;
  }

  #stopNative(): void {
    if (!this.#native) return;
    this.#native = false;
    const id = this.native?.stop() ?? 0;
    if (this.#inLane) {
      this.#inLane = false;
      // A server held in the lane is mid-transaction (the lane holds none between transactions): not reusable.
      const s = id ? this.host.serverById(id) : undefined;
      if (s) this.#takeFromLane(s, true);
      return;
    }
    this.#server?.resumeReads();
  }

  /** A server the lane gave back to this client: it reads it again. */
  #takeFromLane(s: ServerConnection, dirty: boolean): void {
    s.leftLane();
    this.#server = s;
    this.#queue.reset();
    s.attach(this.#sink);
    if (dirty) this.#desync = true;
  }

  /** The native relay gave control back: carry on in JavaScript from exactly where it stopped. */
  readonly #onNative = (h: TxHandback): void => {
    if (!this.#native) return;
    this.#native = false;
    this.stats.bytesFromClient += h.fromClient;
    this.stats.bytesFromBackend += h.fromServer;
    if (h.transactions > 0) {
      this.stats.transactions += h.transactions;
      nativeTxCounters.boundaries += h.transactions;
      nativeTxCounters.laneBoundaries += h.transactions;
    }
    const fromLane = this.#inLane;
    this.#inLane = false;
    const got = fromLane && h.serverId ? this.host.serverById(h.serverId) : undefined;
    if (fromLane && !got) {
      // Between transactions in the lane: the client left, said goodbye, waited too long, or needs a server that
      // only the pool's acquire can give (none idle in the lane, or not with its GUCs, or due for a check).
      if (this.#ended) return;
      if (h.reason === TX_WAIT_TIMEOUT) this.host.waitTimedOut();
      if (h.reason === TX_WAIT_TIMEOUT || h.reason === TX_CLIENT_END || h.clientRest?.[0] === FrontendType.Terminate) {
        nativeTxCounters.laneEnds++;
        this.#end();
        return;
      }
      nativeTxCounters.laneNeedServer++;
      if (h.clientRest) this.#clientReader.push(h.clientRest);
      this.#pumpClient();
      return;
    }
    if (h.reason === TX_BOUNDARY) nativeTxCounters.boundaries++;
    else nativeTxCounters.handbacks++;
    if (got) this.#takeFromLane(got, false);
    const s = this.#server;
    if (!s || this.#ended) return;
    s.resumeReads();
    for (const k of h.queue) {
      const e = KIND[k];
      if (e) this.#queue.push({ ...e });
      else this.#desync = true;
    }
    if (h.status !== 0) this.#lastStatus = String.fromCharCode(h.status);
    if (h.toServer) s.socket.write(h.toServer);
    if (h.mid || (h.reason === TX_BOUNDARY && h.serverRest)) {
      // Stopped inside a message (an end or an error), or bytes after the ReadyForQuery that ends the transaction:
      // the server is out of step, as in #fromServer.
      this.#desync = true;
      this.#detach(false);
      this.#end();
      return;
    }
    if (h.reason === TX_BOUNDARY) this.#detach(this.#clean());
    else if (h.serverRest) this.#fromServer(h.serverRest);
    if (h.clientRest) this.#clientReader.push(h.clientRest);
    this.#pumpClient();
  };

  /** Ask for a server: returned when one is ready now, else the relay waits (#acquired is called later). */
  #request(): ServerConnection | undefined {
    const s = this.host.acquire(this.#gone, this.#acquired);
    if (!s) this.#acquiring = true;
    return s;
  }

  readonly #acquired = (s: ServerConnection | undefined): void => {
    this.#acquiring = false;
    if (!s) {
      this.#end();
      return;
    }
    if (this.#ended) {
      this.host.release(s, true);
      return;
    }
    this.#attach(s);
    if (this.client.isPaused()) this.client.resume();
    this.#pumpClient(true);
  };

  /**
   * Process what the client sent that is waiting in the reader. `fresh`: a server was just attached for it, so the
   * native relay may take over from the first message (never right after it handed a message back: that one is
   * JavaScript's).
   */
  #pumpClient(fresh = false): void {
    if (this.#acquiring || this.#ended) return;
    if (fresh && this.native && this.#server && this.#nativeFromReader()) return;
    try {
      for (;;) {
        if (this.#clientReader.buffered === 0) break;
        if (!this.#server) {
          // A message is waiting (complete or not): get a server first.
          const got = this.#request();
          if (!got) return;
          this.#attach(got);
          if (this.native && this.#nativeFromReader()) return;
          continue;
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
    if (!s.socket.write(out) && this.#waitingDrain !== s) {
      // Backpressure: stop reading the client until this server's socket drains (listened to only now: a
      // listener per transaction would cost more than the rare wait).
      this.#waitingDrain = s;
      s.socket.once('drain', this.#onServerDrain);
      this.client.pause();
    }
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
    this.#queue.emitFakes(this.#toClient);
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
        if (this.#queue.onMessage(s, type, body, this.host)) this.#toClient.push(frame);
        this.#queue.emitFakes(this.#toClient);
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
      this.#detach(!this.#outOfStep);
      if (this.#outOfStep) this.#end();
      // Messages the client sent meanwhile (paused on backpressure) get the next server.
      else this.#pumpClient();
    }
  }

  #flushToClient(chunk?: Buffer): void {
    if (this.#toClient.length === 0) return;
    const out = joinFrames(this.#toClient, chunk);
    if (!this.client.write(out)) this.#server?.socket.pause();
  }
}
