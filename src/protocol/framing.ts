/**
 * Incremental framing of typed protocol messages: Byte1 type · Int32 length (including itself) · body.
 *
 * One growable buffer with read/write cursors (no per-chunk concat); every declared length is checked before the body
 * is awaited, so a peer cannot make us buffer more than `maxMessageLength` (conventions §3).
 */
import { PgtlsError } from '../errors.js';

export interface Message {
  readonly type: number;
  /** A view into the reader's buffer, valid until the next push(). Copy it to keep it. */
  readonly body: Buffer;
  /** The whole message (type, length and body) as a view, for forwarding unchanged. */
  readonly frame: Buffer;
}

export const ERR_MESSAGE_LENGTH = 'PGTLS_ERR_PROTOCOL_MESSAGE_LENGTH';

export class MessageReader {
  private buf: Buffer;
  private start = 0;
  private end = 0;

  constructor(
    private readonly maxMessageLength: number,
    initialSize = 8192,
  ) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  /** Append bytes received from the peer. */
  push(chunk: Uint8Array): void {
    const need = chunk.length;
    if (this.buf.length - this.end < need) this.makeRoom(need);
    this.buf.set(chunk, this.end);
    this.end += need;
  }

  /** The next complete message, or undefined if more bytes are needed. Throws on a bad length word. */
  next(): Message | undefined {
    const avail = this.end - this.start;
    if (avail < 5) return undefined;
    const type = this.buf[this.start]!;
    const length = this.buf.readInt32BE(this.start + 1);
    if (length < 4 || length > this.maxMessageLength) {
      throw new PgtlsError(
        ERR_MESSAGE_LENGTH,
        `invalid message length ${length} for message type "${String.fromCharCode(type)}"`,
        {
          details: { type: String.fromCharCode(type), length, limit: this.maxMessageLength },
        },
      );
    }
    if (avail < 1 + length) return undefined;
    const frame = this.buf.subarray(this.start, this.start + 1 + length);
    const body = this.buf.subarray(this.start + 5, this.start + 1 + length);
    this.start += 1 + length;
    return { type, body, frame };
  }

  /** Bytes received but not yet returned as messages (to hand over to a raw relay). */
  takeRemaining(): Buffer {
    const rest = Buffer.from(this.buf.subarray(this.start, this.end));
    this.start = this.end = 0;
    return rest;
  }

  get buffered(): number {
    return this.end - this.start;
  }

  private makeRoom(need: number): void {
    const live = this.end - this.start;
    if (this.start > 0 && this.buf.length - live >= need) {
      this.buf.copy(this.buf, 0, this.start, this.end);
    } else {
      let size = this.buf.length * 2;
      while (size - live < need) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, this.start, this.end);
      this.buf = next;
    }
    this.start = 0;
    this.end = live;
  }
}

/** Parse a BackendKeyData body: Int32 pid · Byte[n] key (n = 4 before protocol 3.2, up to 256 since). */
export function parseBackendKeyData(body: Buffer): { pid: number; key: Buffer } | undefined {
  if (body.length < 8) return undefined;
  return { pid: body.readInt32BE(0), key: Buffer.from(body.subarray(4)) };
}
