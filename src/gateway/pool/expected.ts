/**
 * What the transaction relay has sent a server and not yet seen answered, in order (PgBouncer's
 * outstanding_requests): which backend message answers which request, which answers the pool made up itself
 * (ParseComplete for a statement the server already had, CloseComplete for a statement it keeps), and, after an
 * ErrorResponse, the skip to the next Sync that the backend makes too.
 */
import { BackendType, decodeCommandTag } from '../../protocol/messages.js';
import type { ClientStatement } from './prepared.js';
import type { ServerConnection } from './server-connection.js';

export type Entry =
  | { k: 'parse'; swallow: boolean; serverName?: string; clientName?: string }
  | { k: 'bind' | 'describe' | 'execute' | 'sync' | 'query' }
  | { k: 'close'; swallow: boolean }
  | { k: 'fake'; msg: Buffer };

export interface ExpectedHost {
  readonly statements: Map<string, ClientStatement>;
  noteClientParam(name: string, value: string): void;
}

export class Expected {
  q: Entry[] = [];
  /** An answer came that matches no request: the server is out of step and is not reused. */
  desync = false;

  get length(): number {
    return this.q.length;
  }

  push(e: Entry): void {
    this.q.push(e);
  }

  reset(): void {
    this.q = [];
    this.desync = false;
  }

  /**
   * Account for one backend message: which request it answers, whether the client sees it (a ParseComplete or
   * CloseComplete for a request the pool made is swallowed). Sets `desync` when an answer matches no request.
   */
  onMessage(s: ServerConnection, type: number, body: Buffer, host: ExpectedHost): boolean {
    const q = this.q;
    const head = q[0];
    let forward = true;
    switch (type) {
      case BackendType.ParameterStatus: {
        const p = s.noteParameterStatus(body);
        if (p) host.noteClientParam(p.name, p.value);
        break;
      }
      case BackendType.ParseComplete:
        if (head?.k === 'parse') {
          forward = !head.swallow;
          q.shift();
        } else this.desync = true;
        break;
      case BackendType.BindComplete:
        if (head?.k === 'bind') q.shift();
        else this.desync = true;
        break;
      case BackendType.CloseComplete:
        if (head?.k === 'close') {
          forward = !head.swallow;
          q.shift();
        } else this.desync = true;
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
          if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') host.statements.clear();
        }
        if (head?.k === 'execute') q.shift();
        break;
      }
      case BackendType.ReadyForQuery:
        if (head?.k === 'sync' || head?.k === 'query') q.shift();
        else this.desync = true;
        break;
      case BackendType.ErrorResponse:
        if (head && head.k !== 'sync' && head.k !== 'query') this.#skipToSync(s, host);
        break;
      default:
        break;
    }
    return forward;
  }

  /** After an error the backend ignores everything up to Sync: so do the expected answers. */
  #skipToSync(s: ServerConnection, host: ExpectedHost): void {
    const q = this.q;
    while (q.length > 0 && q[0]!.k !== 'sync' && q[0]!.k !== 'query') {
      const e = q.shift()!;
      if (e.k === 'parse' && e.serverName) {
        s.prepared.delete(e.serverName);
        if (e.clientName !== undefined && host.statements.get(e.clientName)?.serverName === e.serverName)
          host.statements.delete(e.clientName);
      }
    }
  }

  /** Answers the pool made up, once everything before them has been answered. */
  emitFakes(out: Buffer[]): void {
    const q = this.q;
    while (q.length > 0 && q[0]!.k === 'fake') out.push((q.shift() as { msg: Buffer }).msg);
  }
}
