/**
 * Session pooling's relay: the client's bytes to the server it holds for its whole session and back, unmodified,
 * until the client leaves. On the native data plane the session's native relay carries them (native/src/txrelay.h
 * in session mode: no JavaScript per message, nor per connection beyond its start and its end); otherwise — Node's
 * transport, or whatever the native relay hands back mid-session — a raw JavaScript splice does.
 *
 * Either way the client's Terminate is not forwarded: the server stays open and goes back to the pool, clean only
 * when it is known idle (its last ReadyForQuery said 'I' and nothing was sent after it), else discarded.
 */
import type { Duplex } from 'node:stream';
import { FrontendType } from '../../protocol/messages.js';
import { TX_CLIENT_END, TX_SERVER_END, type TxHandback, type TxRelayPort } from '../transport.js';
import type { ServerConnection } from './server-connection.js';

export interface SessionBytes {
  bytesFromClient: number;
  bytesFromBackend: number;
}

/**
 * Process-wide counters of the session relay (tests and benchmarks read them): sessions the native relay started,
 * stretches the JavaScript splice relayed (a whole session, or the rest of one after a handback), native sessions
 * that ended in C (Terminate, or an end of either side), and native sessions handed back to JavaScript mid-session.
 */
export const sessionRelayCounters = { native: 0, splices: 0, nativeEnds: 0, handbacks: 0 };

/** ReadyForQuery 'I' (the transaction status byte of an idle session). */
const IDLE = 0x49;

/**
 * Relay until the client leaves. `pipelined`: bytes the client sent after its StartupMessage, for the server first.
 * Resolves whether the server is known idle (it may go back to the pool).
 */
export function relaySession(
  client: Duplex,
  server: ServerConnection,
  stats: SessionBytes,
  pipelined: Buffer,
  native: TxRelayPort | undefined,
): Promise<boolean> {
  let first = pipelined;
  if (native && !client.destroyed && !server.broken) {
    // What the client's stream read already goes first (the native relay starts only on an empty stream).
    if (client.readableLength > 0) {
      const parts = [pipelined];
      for (let d = client.read() as Buffer | null; d !== null; d = client.read() as Buffer | null) {
        stats.bytesFromClient += d.length;
        parts.push(d);
      }
      first = Buffer.concat(parts);
    }
    const relayed = relayNative(client, server, stats, first, native);
    if (relayed) return relayed;
  }
  return spliceSession(client, server, stats, first.length === 0, first);
}

/** The native relay for the whole session; undefined when it cannot start (the caller splices in JavaScript). */
function relayNative(
  client: Duplex,
  server: ServerConnection,
  stats: SessionBytes,
  first: Buffer,
  port: TxRelayPort,
): Promise<boolean> | undefined {
  const fd = server.nativeFd(port);
  if (fd === undefined) return undefined;
  let resolve!: (idle: boolean | Promise<boolean>) => void;
  const result = new Promise<boolean>((r) => {
    resolve = r;
  });
  let running = true;
  /** The relay ended without a handback (the client's session was torn down, or the server went under it). */
  const abandon = () => {
    if (!running) return;
    running = false;
    client.off('close', abandon);
    port.stop();
    server.resumeReads();
    server.detach();
    client.destroy();
    resolve(false);
  };
  // Node does not read the server while C does (suspend); this sink hears only of its end (ServerConnection's
  // gone() comes before it closes the relay's fd, and abandon() stops the relay first). Bytes here would mean two
  // readers: the server is out of step, and is closed (gone() follows).
  server.attach({ data: () => server.discard(), gone: abandon });
  if (!server.suspend()) {
    server.detach();
    return undefined;
  }
  const done = (h: TxHandback) => {
    if (!running) return;
    running = false;
    client.off('close', abandon);
    stats.bytesFromClient += h.fromClient;
    stats.bytesFromBackend += h.fromServer;
    server.resumeReads();
    server.detach();
    const rest = h.clientRest;
    if (h.reason === TX_CLIENT_END || rest?.[0] === FrontendType.Terminate) {
      // Goodbye (not forwarded), or the client went: the server stays open for the pool when nothing is under way.
      sessionRelayCounters.nativeEnds++;
      client.destroy();
      resolve(!h.mid && h.status === IDLE && h.queue === '' && !h.toServer && !h.serverRest);
      return;
    }
    if (h.reason === TX_SERVER_END) {
      // The backend ended (a FATAL before it, usually): the client gets what was read, then its session ends.
      sessionRelayCounters.nativeEnds++;
      if (h.serverRest && !client.destroyed) client.write(h.serverRest);
      endClient(client);
      resolve(false);
      return;
    }
    // Something the relay does not follow (a message type it leaves to JavaScript, a full request queue, an answer
    // matching no request): the rest of the session is spliced raw, from exactly where the relay stopped.
    sessionRelayCounters.handbacks++;
    if (h.toServer) server.socket.write(h.toServer);
    if (h.serverRest) client.write(h.serverRest);
    resolve(spliceSession(client, server, stats, false, rest));
  };
  if (!port.start(fd, first, false, done, true)) {
    server.resumeReads();
    server.detach();
    return undefined;
  }
  sessionRelayCounters.native++;
  client.once('close', abandon);
  return result;
}

/** End the client's connection after what was written to it (a FATAL) is out; destroyed if that takes too long. */
function endClient(client: Duplex): void {
  if (client.destroyed) return;
  client.once('finish', () => client.destroy());
  client.end();
  setTimeout(() => client.destroy(), 5000).unref();
}

/**
 * The relay phase's splice(), except that the client going away must leave the server open (it goes back to the
 * pool): the client's Terminate ('X' 0 0 0 4, the last 5 bytes of a chunk) is not forwarded, and only the client
 * side is closed. Resolves whether the server is known to be idle: the last bytes it sent were ReadyForQuery 'I'
 * ('Z' 0 0 0 5 'I' ending a chunk) and the client sent nothing after — the raw relay reads no more than that.
 * `first`: client bytes already read and counted (or, after the StartupMessage, not counted as before), relayed
 * before anything else the client sends.
 */
function spliceSession(
  client: Duplex,
  server: ServerConnection,
  stats: SessionBytes,
  idleAtStart: boolean,
  first?: Buffer,
): Promise<boolean> {
  sessionRelayCounters.splices++;
  return new Promise((resolve) => {
    const s = server.socket;
    let finished = false;
    let idle = idleAtStart;
    const finish = () => {
      if (finished) return;
      finished = true;
      client.off('data', fromClient);
      client.off('drain', resumeServer);
      s.off('drain', resumeClient);
      server.detach();
      client.destroy();
      resolve(idle && !s.destroyed);
    };
    const resumeServer = () => s.resume();
    const resumeClient = () => client.resume();
    const fromClient = (d: Buffer) => {
      stats.bytesFromClient += d.length;
      const n = d.length;
      if (n >= 5 && d[n - 5] === 0x58 && d.readInt32BE(n - 4) === 4) {
        if (n > 5) {
          idle = false;
          s.write(d.subarray(0, n - 5));
        }
        finish();
        return;
      }
      idle = false;
      if (!s.write(d)) client.pause();
    };
    const fromServer = (d: Buffer) => {
      stats.bytesFromBackend += d.length;
      const n = d.length;
      idle = n >= 6 && d[n - 6] === 0x5a && d.readInt32BE(n - 5) === 5 && d[n - 1] === 0x49;
      if (!client.write(d)) s.pause();
    };
    if (client.destroyed || s.destroyed) {
      finish();
      return;
    }
    if (first && first.length > 0) {
      stats.bytesFromClient -= first.length; // fromClient counts it
      fromClient(first);
      if (finished) return;
    }
    client.on('data', fromClient);
    server.attach({ data: fromServer, gone: finish });
    client.on('drain', resumeServer);
    s.on('drain', resumeClient);
    client.once('close', finish);
    client.once('end', finish);
    client.on('error', () => client.destroy());
    client.resume();
  });
}
