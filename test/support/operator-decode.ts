/** Decode the backend messages a console answer holds, for assertions (independent of src/protocol/rows.ts). */
import { decodeErrorFields } from '../../src/protocol/error-response.js';

export type Decoded =
  | { type: 'T'; columns: { name: string; oid: number; size: number; format: number }[] }
  | { type: 'D'; cells: (string | null)[] }
  | { type: 'C'; tag: string }
  | { type: 'E' | 'N'; fields: Readonly<Record<string, string>> }
  | { type: 'I' }
  | { type: 'Z'; status: string }
  | { type: 'R'; code: number }
  | { type: 'S'; name: string; value: string }
  | { type: 'K'; pid: number };

export function decodeBackend(buf: Buffer): Decoded[] {
  const out: Decoded[] = [];
  let at = 0;
  for (let guard = 0; at < buf.length && guard < 100_000; guard++) {
    const type = String.fromCharCode(buf[at]!);
    const len = buf.readInt32BE(at + 1);
    const body = buf.subarray(at + 5, at + 1 + len);
    at += 1 + len;
    if (type === 'T') {
      const n = body.readInt16BE(0);
      let p = 2;
      const columns = [];
      for (let i = 0; i < n; i++) {
        const end = body.indexOf(0, p);
        const name = body.toString('utf8', p, end);
        p = end + 1;
        columns.push({
          name,
          oid: body.readInt32BE(p + 6),
          size: body.readInt16BE(p + 10),
          format: body.readInt16BE(p + 16),
        });
        p += 18;
      }
      out.push({ type, columns });
    } else if (type === 'D') {
      const n = body.readInt16BE(0);
      let p = 2;
      const cells: (string | null)[] = [];
      for (let i = 0; i < n; i++) {
        const l = body.readInt32BE(p);
        p += 4;
        if (l < 0) cells.push(null);
        else {
          cells.push(body.toString('utf8', p, p + l));
          p += l;
        }
      }
      out.push({ type, cells });
    } else if (type === 'C') out.push({ type, tag: body.toString('utf8', 0, body.length - 1) });
    else if (type === 'E' || type === 'N') out.push({ type, fields: decodeErrorFields(body) });
    else if (type === 'I') out.push({ type });
    else if (type === 'Z') out.push({ type, status: body.toString('latin1') });
    else if (type === 'R') out.push({ type, code: body.readInt32BE(0) });
    else if (type === 'K') out.push({ type, pid: body.readInt32BE(0) });
    else if (type === 'S') {
      const [name = '', value = ''] = body.toString('utf8').split('\0');
      out.push({ type, name, value });
    } else throw new Error(`unexpected message type ${type}`);
  }
  return out;
}

/** Rows of a result as objects keyed by column name. */
export function resultRows(msgs: Decoded[]): Record<string, string | null>[] {
  const t = msgs.find((m) => m.type === 'T');
  if (!t || t.type !== 'T') throw new Error(`no RowDescription in ${JSON.stringify(msgs)}`);
  return msgs
    .filter((m): m is Extract<Decoded, { type: 'D' }> => m.type === 'D')
    .map((d) => Object.fromEntries(t.columns.map((c, i) => [c.name, d.cells[i] ?? null])));
}
