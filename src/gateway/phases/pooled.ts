/**
 * attach + relay with pooling (pool_mode = session | transaction): the client does not get a backend connection of
 * its own. The gateway has authenticated it (or the hba line trusts it / checked its certificate); the pool logs a
 * server in with what that authentication gave (SCRAM pass-through keys, the password or md5 secret) and hands it
 * over for the session, or per transaction (src/gateway/pool/). The client's BackendKeyData is the gateway's own, so
 * a CancelRequest for it reaches whichever server runs its query at that moment.
 */
import { encodeAuthenticationOk } from '../../protocol/scram.js';
import { settingsFromOptions } from '../../protocol/startup-options.js';
import type { BackendCredentials } from '../backend-login.js';
import type { ClientConnection } from '../client-connection.js';
import type { ServerCredentials } from '../pool/login.js';
import { ClientGone, PoolRefusal } from '../pool/pool.js';
import type { Pools } from '../pool/pools.js';
import * as refuse from '../refusals.js';
import { authenticateAtGateway, gatewayChecks } from './authenticate-gateway.js';
import type { Admitted } from './startup.js';

function serverCredentials(c: BackendCredentials): ServerCredentials {
  const password = c.password !== undefined ? c.password.toString() : c.md5Secret;
  return {
    ...(password !== undefined ? { password } : {}),
    ...(c.scram
      ? { scramKeys: { clientKey: Buffer.from(c.scram.clientKey), serverKey: Buffer.from(c.scram.serverKey) } }
      : {}),
  };
}

export async function pooledSession(
  c: ClientConnection,
  pools: Pools,
  admitted: Admitted,
  pipelined: Buffer,
): Promise<void> {
  const { record, rt } = c;
  const { line, who, params } = admitted;
  let credentials: ServerCredentials | undefined;
  let pending = pipelined;
  let authOk: Buffer = Buffer.alloc(0);
  // `options` becomes SETs on every server the client uses; a switch that is not a setting cannot (PgBouncer's rule).
  const options = params.params.find(([k]) => k === 'options')?.[1];
  const parsed = options !== undefined ? settingsFromOptions(options) : undefined;
  if (parsed && 'error' in parsed) {
    c.fatal({ severity: 'FATAL', code: '08P01', message: parsed.error }, 'options startup parameter');
    return;
  }
  if (gatewayChecks(line, rt.secrets)) {
    const done = await authenticateAtGateway(c, line, who.user, who.database, rt.secrets!);
    if (!done) return;
    credentials = serverCredentials(done.credentials);
    pending = Buffer.concat([pending, done.pending]);
  } else if (line.method === 'trust' || line.method === 'cert') {
    // Nothing more to ask the client: the pool logs in with the backend credential it is configured with (or trust).
    authOk = encodeAuthenticationOk();
  } else {
    // A password line with no secret to check it against: the pool could not log a server in as this user.
    c.fatal(refuse.authFailed(line.method, who.user), 'pooling needs auth_file or auth_query for password methods');
    return;
  }
  const session = pools.open({
    user: who.user,
    database: who.database,
    startup: params.params,
    minor: params.minor,
    ...(credentials ? { credentials } : {}),
    ...(c.upstream && record.route ? { route: { where: record.route, upstream: c.upstream } } : {}),
  });
  const gone = new ClientGone();
  if (c.gone) gone.fire();
  else c.stream.once('close', () => gone.fire());
  let welcome: Buffer;
  try {
    welcome = await session.welcome(gone);
  } catch (e) {
    if (e instanceof PoolRefusal) {
      c.fatal(e.wire, e.reason);
      return;
    }
    throw e;
  }
  c.authenticated();
  record.outcome = 'relayed';
  record.pooled = { mode: pools.settings.pool_mode, backend_key_pid: session.cancelKey.pid };
  c.live.setState('active');
  c.stream.write(Buffer.concat([authOk, welcome]));
  // Shutdown gives it shutdown_timeout to finish, as a relayed session (its server is the pool's).
  const untrack = rt.trackSession(c.stream);
  let stats: Awaited<ReturnType<typeof session.run>>;
  try {
    stats = await session.run(c.stream, pending, c.tls?.txRelay);
  } finally {
    untrack();
  }
  record.bytes_from_client = stats.bytesFromClient;
  record.bytes_from_backend = stats.bytesFromBackend;
  if (stats.refused) {
    // Logged in from the pool's welcome, then told it gets no server (query_wait_timeout, a refused server login).
    record.outcome = 'refused';
    record.reason = stats.refused.reason;
    record.sqlstate = stats.refused.code;
    // The FATAL went out through the session's stream: end it after that write is flushed, as closeAfter() does for
    // a FATAL of its own (destroying now can drop the write on Node's TLS, whose writes may still be queued).
    c.closeAfter();
  }
}
