/**
 * Did the server ask for a client certificate? libpq learns it from OpenSSL's certificate callback (cert_cb sets
 * ssl_cert_requested) and needs it for sslcertmode=require; Node has no such hook. This tap reads the server's
 * handshake flight from the raw TLS records instead:
 *
 * - TLS 1.2: the handshake is in clear until ChangeCipherSpec; look for a CertificateRequest (type 13).
 * - TLS 1.3: the flight after ServerHello is encrypted with the server handshake traffic secret. Node reports it in
 *   its 'keylog' event (SERVER_HANDSHAKE_TRAFFIC_SECRET), so the records can be decrypted (RFC 8446 §7.3 key
 *   schedule) and searched for a CertificateRequest before the server's Finished — src/tls/server-flight.ts does both.
 *
 * Used only when sslcertmode=require (it puts a JavaScript stream under TLS, which costs some throughput).
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { readServerFlight } from '../tls/server-flight.js';

const MAX_TAPPED = 256 * 1024;

/** A pass-through stream between the TCP socket and TLS that keeps the server's first bytes for inspection. */
export class CertificateRequestTap extends Duplex {
  private tapped: Buffer[] = [];
  private tappedLength = 0;
  private readonly keylogLines: Buffer[] = [];

  constructor(private readonly socket: Socket) {
    super();
    socket.on('data', (chunk: Buffer) => {
      if (this.tappedLength < MAX_TAPPED) {
        this.tapped.push(chunk);
        this.tappedLength += chunk.length;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  /** Feed Node's 'keylog' lines (NSS format). */
  keylog(line: Buffer): void {
    this.keylogLines.push(line);
  }

  /**
   * After the handshake: true if the server sent a CertificateRequest, false if not, undefined if it cannot be told
   * (unknown suite, or a flight larger than the tap keeps).
   */
  certificateRequested(protocol: string | null, suite: string | undefined): boolean | undefined {
    const flight = readServerFlight(Buffer.concat(this.tapped), {
      tls13: protocol === 'TLSv1.3',
      suite,
      keylog: this.keylogLines,
    });
    // TLS ≤ 1.2 shows the flight in clear; a TLS 1.3 flight we could not read to its end tells nothing for sure.
    if (protocol !== 'TLSv1.3' || flight.complete || flight.certificateRequested) return flight.certificateRequested;
    return undefined;
  }

  /** Stop keeping bytes once the handshake is over. */
  release(): void {
    this.tapped = [];
    this.tappedLength = MAX_TAPPED;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}
