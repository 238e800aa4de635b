/**
 * Reads the first packets of a connection (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) from a stream,
 * keeping what arrives beyond the current packet so that it can be checked (buffer stuffing) or handed on.
 */
import type { Duplex } from 'node:stream';
import { type InitialDecode, decodeInitialPacket } from '../../protocol/startup.js';

export type ReadResult =
  | InitialDecode
  | { readonly status: 'eof' }
  | { readonly status: 'first-byte-tls'; readonly data: Buffer };

export class InitialReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: ((r: ReadResult) => void) | undefined;
  private ended = false;
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.settle();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.settle();
  };

  /** @param detectTls when true, a first byte of 0x16 is reported instead of being decoded (direct TLS). */
  constructor(
    private readonly stream: Duplex,
    private detectTls: boolean,
  ) {
    stream.on('data', this.onData);
    stream.once('end', this.onEnd);
    stream.once('close', this.onEnd);
    // A 'data' listener does not restart a stream that an earlier phase paused (the PROXY header reader does).
    stream.resume();
  }

  next(): Promise<ReadResult> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.settle();
    });
  }

  /** Bytes received but not consumed by a packet. */
  leftover(): Buffer {
    return this.buf;
  }

  /** Stop reading; the stream is paused and its listeners removed so another layer can take it over. */
  detach(): Buffer {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.pause();
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  private settle(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.buf.length > 0 && this.detectTls) {
      this.detectTls = false;
      if (this.buf[0] === 0x16) {
        this.waiter = undefined;
        w({ status: 'first-byte-tls', data: this.buf });
        return;
      }
    }
    const r = decodeInitialPacket(this.buf);
    if (r.status === 'packet') {
      this.buf = this.buf.subarray(r.consumed);
      this.waiter = undefined;
      w(r);
      return;
    }
    if (r.status === 'invalid') {
      this.waiter = undefined;
      w(r);
      return;
    }
    if (this.ended) {
      this.waiter = undefined;
      w({ status: 'eof' });
    }
  }
}
