/**
 * A plaintext front end for the pool, for tests and bench/pool.ts before the pool is wired into the TLS gateway:
 * SSLRequest → 'N', StartupMessage → AuthenticationOk + the pool's welcome (ParameterStatus, the gateway's own
 * BackendKeyData, ReadyForQuery), then the client is handed to the pool in the configured mode. A CancelRequest is
 * looked up with pools.cancel(). No client authentication here: the server login uses the configured password.
 */
import { type Server, type Socket, createServer } from 'node:net';
import { InitialReader } from '../../src/gateway/phases/initial-reader.js';
import { PasswordLogin } from '../../src/gateway/pool/login.js';
import { ClientGone, PoolRefusal } from '../../src/gateway/pool/pool.js';
import { Pools } from '../../src/gateway/pool/pools.js';
import { type PoolSettings, poolSettingsFrom } from '../../src/gateway/pool/settings.js';
import type { UpstreamTarget } from '../../src/gateway/upstream.js';
import { encodeErrorResponse } from '../../src/protocol/error-response.js';
import { AUTHENTICATION_OK } from '../../src/protocol/messages.js';
import { parseStartupMessage } from '../../src/protocol/startup.js';

export interface PoolFront {
  readonly port: number;
  readonly pools: Pools;
  readonly events: { event: string; detail: Record<string, unknown> }[];
  close(): Promise<void>;
}

export interface PoolFrontOptions {
  readonly upstream: UpstreamTarget;
  readonly settings: Partial<PoolSettings>;
  /** Backend password per user (the server login's credentials). */
  readonly passwords: Readonly<Record<string, string>>;
  readonly host?: string;
}

export async function startPoolFront(opts: PoolFrontOptions): Promise<PoolFront> {
  const events: PoolFront['events'] = [];
  const login = new PasswordLogin({ upstream: opts.upstream, password: (u) => opts.passwords[u] });
  const pools = new Pools(
    poolSettingsFrom(opts.settings),
    login,
    (s) => login.cancel(s),
    (event, detail) => {
      if (events.length < 10_000) events.push({ event, detail });
    },
  );
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    void serve(sock, pools);
  });
  await new Promise<void>((res) => server.listen(0, opts.host ?? '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    pools,
    events,
    close: async () => {
      for (const s of sockets) s.destroy();
      pools.close();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

async function serve(sock: Socket, pools: Pools): Promise<void> {
  const reader = new InitialReader(sock, false);
  for (let i = 0; i < 3; i++) {
    const r = await reader.next();
    if (r.status !== 'packet') {
      sock.destroy();
      return;
    }
    const p = r.packet;
    if (p.kind === 'SSLRequest' || p.kind === 'GSSENCRequest') {
      sock.write('N');
      continue;
    }
    if (p.kind === 'CancelRequest') {
      reader.detach();
      await pools.cancel(p.pid, p.key).catch(() => false);
      sock.destroy();
      return;
    }
    const parsed = parseStartupMessage(p.code, p.body);
    const pipelined = reader.detach();
    if (!parsed.ok) {
      sock.end(encodeErrorResponse(parsed.error));
      return;
    }
    const sp = parsed.value;
    const session = pools.open({ user: sp.user, database: sp.database, startup: sp.params, minor: sp.minor });
    const gone = new ClientGone();
    sock.once('close', () => gone.fire());
    try {
      const welcome = await session.welcome(gone);
      sock.write(Buffer.concat([AUTHENTICATION_OK, welcome]));
    } catch (e) {
      const wire =
        e instanceof PoolRefusal
          ? e.wire
          : { severity: 'FATAL' as const, code: 'XX000', message: 'internal error in the pgtls gateway' };
      sock.end(encodeErrorResponse(wire));
      return;
    }
    await session.run(sock, pipelined);
    return;
  }
  sock.destroy();
}
