/**
 * Framing for the transaction relay's hot path: messages read in place from the chunk a socket delivered, and
 * written on without a copy when nothing was rewritten.
 */
import { PgtlsError } from '../../errors.js';
import { ERR_MESSAGE_LENGTH, type MessageReader } from '../../protocol/framing.js';

/**
 * Call `fn` for each complete message of `d`, in place when the reader holds nothing (frames are then views of `d`,
 * which the socket never reuses), through the reader otherwise; an incomplete tail, or what follows a message for
 * which `fn` returned false, is kept in the reader.
 */
export function eachMessage(
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
export function joinFrames(list: Buffer[], chunk: Buffer | undefined): Buffer {
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
