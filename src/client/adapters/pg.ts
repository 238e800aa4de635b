/**
 * node-postgres adapter: `new pg.Client(pgtlsPg('postgres://…?sslmode=verify-full'))` or
 * `new pg.Pool(pgtlsPg(…))`. The returned config carries host/port/user/database/password from the plan and a
 * `stream` factory, so every connection (pool members and the extra connection pg opens to cancel a query) is
 * negotiated by pgtls with libpq's semantics. pg's own `ssl` is turned off: TLS is already done when pg sees the
 * socket, and pg must not send a second SSLRequest.
 */
import {
  type ConnectionInput,
  type ConnectionPlan,
  type Environment,
  type ResolveOptions,
  resolve,
} from '../resolve.js';
import { PgtlsSocket } from '../stream.js';

export interface PgConfig {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string | (() => Promise<string>);
  ssl: false;
  application_name?: string;
  options?: string;
  connectionTimeoutMillis?: number;
  stream: () => PgtlsSocket;
  /** The resolved plan, for inspection. */
  pgtlsPlan: ConnectionPlan;
  [key: string]: unknown;
}

export interface PgtlsPgOptions extends ResolveOptions {
  readonly env?: Environment;
  /** Called with every socket pgtls creates (to listen for 'negotiated' / 'fallback'). */
  readonly onSocket?: (socket: PgtlsSocket) => void;
}

export function pgtlsPg(input: ConnectionInput | ConnectionPlan, opts: PgtlsPgOptions = {}): PgConfig {
  const plan = isPlan(input) ? input : resolve(input, opts.env ?? process.env, opts);
  const first = plan.hosts[0];
  const password = first?.password;
  // Sockets still logging in: when pg asks our password function (so nobody gave pg a password), the socket whose
  // server asked for one ends the login with libpq's "fe_sendauth: no password supplied".
  const loggingIn = new Set<PgtlsSocket>();
  const noPassword = async (): Promise<string> => {
    const sock = [...loggingIn].find((s) => s.passwordRequested);
    if (sock) {
      loggingIn.delete(sock);
      throw sock.giveUp('fe_sendauth: no password supplied');
    }
    throw new Error('fe_sendauth: no password supplied');
  };
  const p = plan.params;
  return {
    host: first?.host || first?.hostaddr || 'localhost',
    port: Number(first?.port || 5432) || 5432,
    user: plan.user,
    database: plan.database,
    password: password === undefined ? noPassword : password,
    ...(p.application_name || p.fallback_application_name
      ? { application_name: (p.application_name || p.fallback_application_name)! }
      : {}),
    ...(p.options ? { options: p.options } : {}),
    ...(p.client_encoding ? { client_encoding: p.client_encoding } : {}),
    ...(p.keepalives === '0' ? {} : { keepAlive: true }),
    ...(plan.connectTimeoutSeconds > 0 ? { connectionTimeoutMillis: plan.connectTimeoutSeconds * 1000 } : {}),
    ssl: false,
    stream: () => {
      const s = new PgtlsSocket(plan);
      loggingIn.add(s);
      s.once('close', () => loggingIn.delete(s));
      s.once('login', () => loggingIn.delete(s));
      opts.onSocket?.(s);
      return s;
    },
    pgtlsPlan: plan,
  };
}

export function isPlan(x: unknown): x is ConnectionPlan {
  return typeof x === 'object' && x !== null && 'methods' in x && 'hosts' in x && 'ssl' in x && 'steps' in x;
}

export default pgtlsPg;
