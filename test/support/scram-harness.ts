/**
 * A minimal TLS front end that authenticates PostgreSQL clients with the shared SCRAM module and then logs in to a
 * real backend with the ClientKey it recovered (SCRAM pass-through, as PgBouncer does) and relays — a sketch of what
 * the gateway's `authenticate` and `attach` phases do with src/auth/scram-server.ts and src/protocol/scram-client.ts:
 *
 *   SSLRequest → 'S' → TLS → StartupMessage → ScramServer exchange (secret from the user map, mock for strangers)
 *     → failure: FATAL ErrorResponse from step.error, close
 *     → success: SASLFinal, AuthenticationOk; backend: SSLRequest, TLS, StartupMessage, ScramClient with
 *       keys = {ClientKey recovered, ServerKey of the secret} and expect = {salt, iterations}, channel binding
 *       required; then the backend's ParameterStatus… ReadyForQuery go to the client and bytes flow both ways.
 *
 * Test support only: one connection at a time is enough, limits are small and fixed, errors close the connection.
 */
import { X509Certificate } from 'node:crypto';
import { type Server, type Socket, createServer, connect as netConnect } from 'node:net';
import { type TLSSocket, TLSSocket as TlsSocketClass, createSecureContext, connect as tlsConnect } from 'node:tls';
import { ScramServer, scramFailureToWire } from '../../src/auth/scram-server.js';
import { decodeErrorFields, encodeErrorResponse } from '../../src/protocol/error-response.js';
import { type ChannelBindingMode, ScramClient, selectScramMechanism } from '../../src/protocol/scram-client.js';
import { encodeAuthenticationOk, tlsServerEndPoint } from '../../src/protocol/scram.js';
import {
  decodeInitialPacket,
  encodeSSLRequest,
  encodeStartupMessage,
  parseStartupMessage,
} from '../../src/protocol/startup.js';

const MAX_MESSAGE = 64 * 1024;

/** Pull-style reads from a socket: whole messages or a number of bytes, with a bounded buffer. */
export class SocketReader {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  constructor(private readonly socket: Socket | TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      if (this.buf.length > MAX_MESSAGE * 2) socket.destroy();
      this.wake?.();
    });
    const end = () => {
      this.ended = true;
      this.wake?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }
  async bytes(n: number): Promise<Buffer> {
    for (let guard = 0; this.buf.length < n; guard++) {
      if (this.ended || guard > 10_000) throw new Error('connection closed');
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }
  /** One typed message: type byte, body. */
  async message(): Promise<{ type: number; body: Buffer; frame: Buffer }> {
    const head = await this.bytes(5);
    const len = head.readInt32BE(1);
    if (len < 4 || len > MAX_MESSAGE) throw new Error(`bad message length ${len}`);
    const body = await this.bytes(len - 4);
    return { type: head[0]!, body, frame: Buffer.concat([head, body]) };
  }
  /** What was read but not consumed; the reader stops listening. */
  detach(): Buffer {
    this.socket.removeAllListeners('data');
    return this.buf;
  }
}

export interface LoginResult {
  readonly ok: boolean;
  readonly socket: TLSSocket;
  readonly channelBound: boolean;
  /** The backend's messages after AuthenticationOk up to and including ReadyForQuery (frames). */
  readonly afterAuth: readonly Buffer[];
  /** The server's ErrorResponse fields, or the client role's own (libpq) message. */
  readonly serverError?: Readonly<Record<string, string>>;
  readonly clientError?: string;
}

/**
 * The client role against a real server: SSLRequest, TLS, StartupMessage, SCRAM with a password or pass-through
 * keys, until ReadyForQuery or an error.
 */
export async function scramLogin(opts: {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly password?: string;
  readonly keys?: { clientKey: Uint8Array; serverKey: Uint8Array };
  readonly expect?: { salt: string; iterations: number };
  readonly channelBinding: ChannelBindingMode;
  /** Override the binding data (to prove a server checks it). */
  readonly bindingData?: Buffer;
}): Promise<LoginResult> {
  const raw = netConnect(opts.port, opts.host);
  await new Promise<void>((resolve, reject) => raw.once('connect', resolve).once('error', reject));
  raw.write(encodeSSLRequest());
  const answer = await new Promise<Buffer>((resolve) => raw.once('data', resolve));
  if (answer.toString() !== 'S') throw new Error('server refused SSL');
  const socket = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const binding = opts.bindingData ?? tlsServerEndPoint(socket.getPeerCertificate().raw);
  const reader = new SocketReader(socket);
  socket.write(
    encodeStartupMessage([
      ['user', opts.user],
      ['database', opts.database],
    ]),
  );
  let scram: ScramClient | undefined;
  const afterAuth: Buffer[] = [];
  let authOk = false;
  const fail = (r: Partial<LoginResult>): LoginResult => {
    socket.destroy();
    return { ok: false, socket, channelBound: false, afterAuth, ...r };
  };
  for (let guard = 0; guard < 1000; guard++) {
    const m = await reader.message().catch(() => undefined);
    if (!m) return fail({ clientError: 'server closed the connection unexpectedly' });
    if (m.type === 0x45) return fail({ serverError: decodeErrorFields(m.body) });
    if (authOk) {
      afterAuth.push(m.frame);
      if (m.type === 0x5a) {
        reader.detach();
        return { ok: true, socket, channelBound: scram?.channelBound ?? false, afterAuth };
      }
      continue;
    }
    if (m.type !== 0x52) return fail({ clientError: `unexpected message ${String.fromCharCode(m.type)}` });
    const code = m.body.readInt32BE(0);
    const data = m.body.toString('latin1', 4);
    if (code === 10) {
      const choice = selectScramMechanism(data.split('\0').filter(Boolean), {
        tls: true,
        channelBinding: opts.channelBinding,
      });
      if ('error' in choice) return fail({ clientError: choice.error });
      scram = new ScramClient({
        ...choice,
        password: opts.password,
        keys: opts.keys,
        expect: opts.expect,
        channelBinding: binding,
      });
      socket.write(scram.initialResponse());
    } else if (code === 11 && scram) {
      const step = scram.serverFirstMessage(data);
      if (!step.ok) return fail({ clientError: step.error });
      socket.write(step.message);
    } else if (code === 12 && scram) {
      const final = scram.serverFinalMessage(data);
      if (!final.ok) return fail({ clientError: final.error });
    } else if (code === 0) {
      authOk = true;
    } else {
      return fail({ clientError: `authentication request ${code} not handled` });
    }
  }
  return fail({ clientError: 'too many messages' });
}

export interface HarnessOptions {
  readonly certPem: string;
  readonly keyPem: string;
  /** user → stored secret (SCRAM secret as in pg_authid, or a plaintext password). */
  readonly users: ReadonlyMap<string, string>;
  readonly mockSecret: Buffer;
  readonly offerChannelBinding?: boolean;
  /** Where to log in with the recovered ClientKey and relay; without it, a FATAL after ReadyForQuery would do. */
  readonly backend: { readonly host: string; readonly port: number };
}

export interface Harness {
  readonly port: number;
  /** One line per authentication outcome (user, result, log detail) — never a secret. */
  readonly log: string[];
  close(): Promise<void>;
}

export async function startScramHarness(opts: HarnessOptions): Promise<Harness> {
  const secureContext = createSecureContext({ cert: opts.certPem, key: opts.keyPem });
  const leafDer = Buffer.from(new X509Certificate(opts.certPem).raw);
  const log: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => undefined);
    serve(raw).catch(() => raw.destroy());
  });

  async function serve(raw: Socket): Promise<void> {
    const first = new SocketReader(raw);
    const ssl = decodeInitialPacket(await first.bytes(8));
    if (ssl.status !== 'packet' || ssl.packet.kind !== 'SSLRequest') throw new Error('harness wants an SSLRequest');
    first.detach();
    raw.write('S');
    const tls = new TlsSocketClass(raw, { isServer: true, secureContext });
    tls.on('error', () => undefined);
    const reader = new SocketReader(tls);
    const head = await reader.bytes(4);
    const rest = await reader.bytes(head.readInt32BE(0) - 4);
    const packet = decodeInitialPacket(Buffer.concat([head, rest]));
    if (packet.status !== 'packet' || packet.packet.kind !== 'StartupMessage') throw new Error('no StartupMessage');
    const startup = parseStartupMessage(packet.packet.code, packet.packet.body);
    if (!startup.ok) throw new Error('bad StartupMessage');
    const { user, database } = startup.value;

    // authenticate
    const scram = new ScramServer({
      user,
      secret: opts.users.get(user),
      mockSecret: opts.mockSecret,
      tls: true,
      serverCertificate: leafDer,
      ...(opts.offerChannelBinding !== undefined ? { offerChannelBinding: opts.offerChannelBinding } : {}),
    });
    tls.write(scram.start());
    for (let guard = 0; guard < 4; guard++) {
      const m = await reader.message();
      const step = scram.receive(m.type, m.body);
      if (step.kind === 'continue') {
        tls.write(step.message);
        continue;
      }
      if (step.kind === 'failure') {
        log.push(
          `${user}: ${step.error.sqlstate} ${step.error.message}${step.logDetail ? ` (${step.logDetail})` : ''}`,
        );
        tls.end(encodeErrorResponse(scramFailureToWire(step.error)));
        return;
      }
      log.push(`${user}: authenticated${step.channelBound ? ' with channel binding' : ''}`);
      tls.write(Buffer.concat([step.message, encodeAuthenticationOk()]));

      // attach: the backend, with the keys the client just proved
      const backend = await scramLogin({
        host: opts.backend.host,
        port: opts.backend.port,
        user,
        database,
        keys: { clientKey: step.keys.clientKey, serverKey: step.keys.serverKey },
        expect: { salt: step.keys.salt, iterations: step.keys.iterations },
        channelBinding: 'require',
      });
      if (!backend.ok) {
        log.push(`${user}: backend login failed: ${backend.clientError ?? backend.serverError?.M}`);
        tls.end(
          encodeErrorResponse({
            severity: 'FATAL',
            code: backend.serverError?.C ?? '08006',
            message: backend.serverError?.M ?? backend.clientError ?? 'backend login failed',
          }),
        );
        return;
      }
      log.push(`${user}: backend login by SCRAM pass-through${backend.channelBound ? ' with channel binding' : ''}`);
      tls.write(Buffer.concat(backend.afterAuth as Buffer[]));
      const pending = reader.detach();
      if (pending.length) backend.socket.write(pending);
      tls.pipe(backend.socket);
      backend.socket.pipe(tls);
      backend.socket.on('error', () => tls.destroy());
      backend.socket.on('close', () => tls.destroy());
      tls.on('close', () => backend.socket.destroy());
      return;
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
