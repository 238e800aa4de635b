/**
 * Protocol-level named prepared statements across servers, as PgBouncer 1.21+ does with max_prepared_statements
 * (its prepare.c): every distinct statement (query text and parameter types) gets one server-side name, PGTLS_<n>,
 * shared by all clients; a client's own names map to those; a statement is prepared on a server the first time a
 * client needs it there, and each server keeps at most max_prepared_statements of them (least recently used closed
 * first).
 */

/** Gateway-wide: statement body (after the name) → server-side name. */
export class StatementNames {
  readonly #byBody = new Map<string, string>();
  #next = 1;

  /** The server-side name for a Parse body (query text + parameter types), the same for every client. */
  nameFor(rest: Buffer): string {
    const k = rest.toString('latin1');
    let name = this.#byBody.get(k);
    if (!name) {
      name = `PGTLS_${this.#next++}`;
      this.#byBody.set(k, name);
    }
    return name;
  }

  get size(): number {
    return this.#byBody.size;
  }
}

/** One statement a client prepared: its server-side name and what it takes to prepare it again elsewhere. */
export interface ClientStatement {
  readonly serverName: string;
  /** Parse body after the name (copied: the reader's buffer is reused). */
  readonly rest: Buffer;
}
