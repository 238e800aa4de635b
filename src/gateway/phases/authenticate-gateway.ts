/**
 * Phase 3 at the gateway: when the matched pg_hba.conf line says `scram-sha-256`, `md5` or `password` and the
 * gateway has a secret source (auth_file / auth_query), the gateway authenticates the client itself, exactly as
 * ClientAuthentication() would — the same requests, the same texts and SQLSTATEs, a mock SCRAM exchange for unknown
 * users (no user enumeration) — and over TLS it offers SCRAM-SHA-256-PLUS bound to the certificate it served
 * (tls-server-end-point), which PgBouncer cannot. The result carries what the backend login needs.
 */
import {
  type PasswordCheck,
  classifySecret,
  md5Salt,
  parsePasswordPacket,
  passwordAuthFailed,
  verifyCleartextPassword,
  verifyMd5Response,
} from '../../auth/password.js';
import { ScramServer, scramFailureToWire } from '../../auth/scram-server.js';
import type { HbaLine } from '../../hba/hba.js';
import { SqlState } from '../../protocol/constants.js';
import {
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationMD5Password,
  encodeAuthenticationOk,
} from '../../protocol/scram.js';
import type { BackendCredentials } from '../backend-login.js';
import type { ClientConnection } from '../client-connection.js';
import { MessageStream } from '../message-stream.js';
import type { SecretSource } from '../secrets.js';

/** A password or SASL message is small; PostgreSQL's limit for them is PG_MAX_AUTH_TOKEN_LENGTH (65535). */
const MAX_AUTH_MESSAGE = 65535 + 5;

/** Methods the gateway can check itself. */
export function gatewayChecks(line: HbaLine, secrets: SecretSource | undefined): boolean {
  return (
    secrets !== undefined && (line.method === 'scram-sha-256' || line.method === 'md5' || line.method === 'password')
  );
}

export interface GatewayAuthenticated {
  readonly credentials: BackendCredentials;
  /** Bytes the client sent after its last authentication message (to go to the backend). */
  readonly pending: Buffer;
  readonly method: string;
}

export async function authenticateAtGateway(
  c: ClientConnection,
  line: HbaLine,
  user: string,
  database: string,
  secrets: SecretSource,
): Promise<GatewayAuthenticated | undefined> {
  const { record } = c;
  let stored: string | undefined;
  try {
    stored = await secrets.lookup(user, database);
  } catch (err) {
    record.upstream_error = (err as Error).message;
    c.fatal(
      { severity: 'FATAL', code: SqlState.ConnectionFailure, message: 'could not look up the password of the user' },
      `secret lookup failed: ${(err as Error).message}`,
    );
    return undefined;
  }
  const reader = new MessageStream(c.stream, MAX_AUTH_MESSAGE);
  // The record's reason: the client's message, and PostgreSQL's log DETAIL when there is one.
  const refuse = (logDetail: string | undefined, err = passwordAuthFailed(user)) => {
    reader.detach();
    c.fatal(scramFailureToWire(err), logDetail ? `${err.message}: ${logDetail}` : err.message);
    return undefined;
  };
  /** One client message of type 'p' (PasswordMessage / SASL responses share the type byte). */
  const nextPassword = async () => {
    const m = await reader.next();
    if (!m || 'error' in m) return undefined;
    return m;
  };
  const secret = stored === undefined ? undefined : classifySecret(stored);
  // PostgreSQL: an md5 line for a user whose secret is SCRAM authenticates with SCRAM.
  const method = line.method === 'md5' && secret?.kind === 'scram' ? 'scram-sha-256' : line.method;
  record.auth_method = method;

  if (method === 'scram-sha-256') {
    const served = c.material?.leaf ?? c.rt.tls.current().leaf;
    const scram = new ScramServer({
      user,
      secret: stored,
      mockSecret: c.rt.mockSecret,
      tls: c.tls !== undefined,
      ...(c.tls ? { serverCertificate: served.raw } : {}),
    });
    c.stream.write(scram.start());
    for (let guard = 0; guard < 8; guard++) {
      const m = await nextPassword();
      if (!m) return closedDuring(c, reader);
      const step = scram.receive(m.type, m.body);
      if (step.kind === 'continue') {
        c.stream.write(step.message);
        continue;
      }
      if (step.kind === 'failure') return refuse(step.logDetail, step.error);
      c.stream.write(Buffer.concat([step.message, encodeAuthenticationOk()]));
      record.channel_binding = step.channelBound;
      if (step.channelBound) record.auth_method = 'scram-sha-256-plus';
      const credentials: BackendCredentials = {
        user,
        scram: step.keys,
        ...(secret?.kind === 'plain' ? { password: secret.password } : {}),
      };
      return { credentials, pending: reader.detach(), method: step.channelBound ? 'scram-sha-256-plus' : method };
    }
    return refuse('too many SASL messages');
  }

  let check: PasswordCheck;
  let password: Buffer | undefined;
  if (method === 'md5') {
    const salt = md5Salt();
    c.stream.write(encodeAuthenticationMD5Password(salt));
    const m = await nextPassword();
    if (!m) return closedDuring(c, reader);
    if (m.type !== 0x70)
      return refuse(`expected password response, got message type ${m.type}`, protocolViolation(m.type));
    const p = parsePasswordPacket(m.body);
    if ('error' in p) return refuse(undefined, p.error);
    check = verifyMd5Response(user, stored, salt, p.password.toString('latin1'));
  } else {
    c.stream.write(encodeAuthenticationCleartextPassword());
    const m = await nextPassword();
    if (!m) return closedDuring(c, reader);
    if (m.type !== 0x70)
      return refuse(`expected password response, got message type ${m.type}`, protocolViolation(m.type));
    const p = parsePasswordPacket(m.body);
    if ('error' in p) return refuse(undefined, p.error);
    password = p.password;
    check = verifyCleartextPassword(user, stored, p.password);
  }
  if (!check.ok) return refuse(check.logDetail);
  c.stream.write(encodeAuthenticationOk());
  const credentials: BackendCredentials = {
    user,
    ...(password !== undefined ? { password } : {}),
    ...(secret?.kind === 'plain' ? { password: secret.password } : {}),
    ...(secret?.kind === 'md5' ? { md5Secret: secret.hash } : {}),
  };
  return { credentials, pending: reader.detach(), method };
}

/** PostgreSQL's FATAL for a message that is not a password response (auth.c recv_password_packet). */
function protocolViolation(type: number) {
  return {
    sqlstate: SqlState.ProtocolViolation,
    message: `expected password response, got message type ${type}`,
  };
}

function closedDuring(c: ClientConnection, reader: MessageStream): undefined {
  reader.detach();
  c.record.outcome = 'closed';
  c.record.reason = 'client closed the connection during authentication';
  c.destroy();
  return undefined;
}
