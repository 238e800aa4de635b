/**
 * The live client connections, for SHOW CLIENTS / SHOW SSL and KILL_CLIENT: each connection registers its
 * ConnectionRecord (which the phases keep filling in) and a way to close it, and updates its state as it moves through
 * the phases. A snapshot copies the record at that moment, with live byte counters during the relay.
 */
import type { ConnectionRecord } from '../runtime.js';
import type { RelayStats, TlsFacts } from '../transport.js';
import type { ClientState, LiveClient } from './runtime-view.js';

export interface LiveHandle {
  readonly id: number;
  setState(state: ClientState): void;
  setTls(facts: TlsFacts): void;
  /** The backend pid from BackendKeyData, once authentication passed. */
  setBackendPid(pid: number): void;
  /** The relay's counters, read live by snapshots. */
  setRelayStats(stats: RelayStats): void;
  /** The connection is over: forget it. Idempotent. */
  end(): void;
}

interface Entry {
  readonly id: number;
  readonly record: ConnectionRecord;
  readonly connectTime: Date;
  readonly close: () => void;
  state: ClientState;
  tls?: TlsFacts;
  backendPid?: number;
  stats?: RelayStats;
}

export class ClientRegistry {
  readonly #live = new Map<number, Entry>();

  /**
   * Register a connection as it is accepted; `close` destroys its client socket (and so its backend). The id is the
   * record's own (the one the log shows), so KILL_CLIENT takes what an operator reads in the log.
   */
  register(record: ConnectionRecord, close: () => void, now = new Date()): LiveHandle {
    const id = record.id;
    const e: Entry = { id, record, connectTime: now, close, state: 'negotiating' };
    this.#live.set(id, e);
    return {
      id,
      setState: (s) => {
        e.state = s;
      },
      setTls: (f) => {
        e.tls = f;
      },
      setBackendPid: (pid) => {
        e.backendPid = pid;
      },
      setRelayStats: (s) => {
        e.stats = s;
      },
      end: () => {
        this.#live.delete(id);
      },
    };
  }

  get size(): number {
    return this.#live.size;
  }

  /** A copy of every live connection, in id order. */
  clients(): LiveClient[] {
    return [...this.#live.values()].map((e) => ({
      ...e.record,
      ...(e.stats ? { bytes_from_client: e.stats.bytesFromClient, bytes_from_backend: e.stats.bytesFromBackend } : {}),
      id: e.id,
      connect_time: e.connectTime,
      state: e.state,
      ...(e.backendPid === undefined ? {} : { backend_pid: e.backendPid }),
      ...(e.tls ? { tls: e.tls } : {}),
    }));
  }

  /** KILL_CLIENT: close connection `id`; false when there is none. */
  kill(id: number): boolean {
    const e = this.#live.get(id);
    if (!e) return false;
    e.record.reason ??= 'closed by KILL_CLIENT on the admin console';
    e.close();
    return true;
  }
}
