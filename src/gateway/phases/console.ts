/**
 * The admin console as a destination: `dbname=pgtls` for a user in admin_users / stats_users, over TLS (or the Unix
 * socket), after hba and authentication like any other session. The console answers PgBouncer-style commands from
 * the gateway's own state (src/gateway/admin/); there is no backend. A user in neither list goes on to the backend,
 * which gives PostgreSQL's usual refusal for a database it does not have.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { CONSOLE_DATABASE, consoleRole, runConsoleSession } from '../admin/session.js';
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import type { RelayStats } from '../transport.js';
import { authenticateAtGateway, gatewayChecks } from './authenticate-gateway.js';
import type { Admitted } from './startup.js';

/** True when this session is for the console (and was handled here, whatever the outcome). */
export async function maybeConsole(c: ClientConnection, admitted: Admitted, pipelined: Buffer): Promise<boolean> {
  if (admitted.who.database !== CONSOLE_DATABASE) return false;
  const role = consoleRole(c.cfg, admitted.who.user);
  if (!role) return false;
  const { record, rt } = c;
  if (!c.tls && !c.local) {
    c.fatal(refuse.consoleNeedsTls(), 'admin console: plaintext refused');
    return true;
  }
  let pending = pipelined;
  let sendAuthenticationOk = true;
  const method = admitted.line.method;
  if (gatewayChecks(admitted.line, rt.secrets)) {
    const done = await authenticateAtGateway(c, admitted.line, admitted.who.user, CONSOLE_DATABASE, rt.secrets!);
    if (!done) return true;
    pending = Buffer.concat([pending, done.pending]);
    sendAuthenticationOk = false;
  } else if (method !== 'trust' && method !== 'cert') {
    // A password line with nothing to check the password against: never a way in.
    c.fatal(
      refuse.authFailed(method, admitted.who.user),
      'admin console: password methods need auth_file or auth_query',
    );
    return true;
  }
  c.authenticated();
  record.outcome = 'relayed';
  record.reason = `admin console (${role})`;
  c.live.setState('active');
  const stats: RelayStats = { bytesFromClient: 0, bytesFromBackend: 0 };
  c.live.setRelayStats(stats);
  await runConsoleSession(c.stream, {
    view: rt.operator,
    role,
    sendAuthenticationOk,
    backendKey: { pid: randomInt(1, 2 ** 31 - 1), key: randomBytes(4) },
    pending,
    stats,
  });
  record.bytes_from_client = stats.bytesFromClient;
  record.bytes_from_backend = stats.bytesFromBackend;
  return true;
}
