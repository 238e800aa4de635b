/**
 * Typed protocol messages read one at a time from a stream, for the phases that converse (gateway authentication,
 * the backend login). Bounded: a declared length outside [4, limit] fails the read, as PostgreSQL's pq_getmessage
 * does. detach() hands back what was read beyond the last message, for the relay.
 */
import type { Duplex } from 'node:stream';

export interface Frame {
  readonly type: number;
  readonly body: Buffer;
  /** The whole message: type, length, body. */
  readonly frame: Buffer;
}

export class MessageStream {
  #buf: Buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #ended = false;
  readonly #onData = (d: Buffer) => {
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    this.#wake?.();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.#wake?.();
  };

  constructor(
    private readonly stream: Duplex,
    private readonly limit: number,
  ) {
    stream.on('data', this.#onData);
    stream.once('end', this.#onEnd);
    stream.once('close', this.#onEnd);
    if (stream.destroyed) this.#ended = true;
    stream.resume();
  }

  /** The next message, or undefined when the stream ended (or sent a length out of bounds: `error` says so). */
  async next(): Promise<Frame | { error: string } | undefined> {
    for (;;) {
      if (this.#buf.length >= 5) {
        const len = this.#buf.readInt32BE(1);
        if (len < 4 || len > this.limit) return { error: `invalid message length ${len}` };
        if (this.#buf.length >= 1 + len) {
          const frame = Buffer.from(this.#buf.subarray(0, 1 + len));
          this.#buf = this.#buf.subarray(1 + len);
          return { type: frame[0]!, body: frame.subarray(5), frame };
        }
      }
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  /** Stop reading; returns the bytes read beyond the last message. The stream is paused. */
  detach(): Buffer {
    this.stream.off('data', this.#onData);
    this.stream.off('end', this.#onEnd);
    this.stream.off('close', this.#onEnd);
    this.stream.pause();
    const rest = this.#buf;
    this.#buf = Buffer.alloc(0);
    return rest;
  }
}
