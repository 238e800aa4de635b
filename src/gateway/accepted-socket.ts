/**
 * A TCP connection accepted without a net.Socket: the native transport's fast path (src/tls/native.ts negotiate()).
 * Node's listening handle hands the gateway the accepted handle (libuv's TCPWrap) and the gateway gives its fd to the
 * addon before anything is read, so a connection that opens with an SSLRequest alone — nearly all of them — never
 * pays for a net.Socket and its stream machinery (~6 % of the gateway's CPU per connection under `pgbench -C`).
 * Anything else becomes an ordinary net.Socket on the same handle (toNetSocket()), and the phases go on as always.
 *
 * It stands for the connection where the phases hold one: the peer's address, destroy(), 'close' — the subset of
 * net.Socket that ClientConnection and the gateway's bookkeeping use.
 */
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';

/** The parts of Node's accepted TCP handle (TCPWrap) used here. */
export interface AcceptedHandle {
  readonly fd: number;
  getpeername(out: { address?: string; port?: number; family?: string }): number;
  setNoDelay(on: boolean): number;
  close(cb?: () => void): void;
}

export class AcceptedSocket extends EventEmitter {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly remoteFamily: string | undefined;
  #handle: AcceptedHandle | undefined;
  #net: Socket | undefined;
  #destroyed = false;

  constructor(handle: AcceptedHandle) {
    super();
    this.#handle = handle;
    handle.setNoDelay(true); // what net.Server({ noDelay: true }) does for the sockets it makes
    const peer: { address?: string; port?: number; family?: string } = {};
    handle.getpeername(peer);
    this.remoteAddress = peer.address;
    this.remotePort = peer.port;
    this.remoteFamily = peer.family;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The accepted handle while nothing else owns the connection (its fd is what the addon takes a dup of). */
  get handle(): AcceptedHandle | undefined {
    return this.#handle;
  }

  /** The addon holds a dup of the fd now: Node's handle (and its descriptor) closes. */
  release(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }

  /** The connection as an ordinary net.Socket from now on (reading); this object follows its 'close'. */
  toNetSocket(): Socket {
    if (this.#net) return this.#net;
    const handle = this.#handle;
    if (!handle) throw new Error('the accepted connection has no handle any more');
    this.#handle = undefined;
    // As net.Server makes one for an accepted handle (its constructor starts reading).
    const s = new Socket({ handle, readable: true, writable: true } as unknown as ConstructorParameters<
      typeof Socket
    >[0]);
    this.#net = s;
    s.once('close', (hadError: boolean) => {
      this.#destroyed = true;
      this.emit('close', hadError);
    });
    return s;
  }

  setNoDelay(): this {
    return this;
  }

  destroy(): this {
    if (this.#net) {
      this.#net.destroy();
      return this;
    }
    if (this.#destroyed) return this;
    this.#destroyed = true;
    this.release();
    process.nextTick(() => this.emit('close', false));
    return this;
  }
}
