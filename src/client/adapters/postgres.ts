/**
 * postgres.js adapter: `postgres(pgtlsPostgres('postgres://…?sslmode=verify-full'))`. The returned options carry
 * host/port/user/database/password from the plan and a `socket` factory that resolves once pgtls has negotiated the
 * connection (postgres.js then sends its StartupMessage at once). postgres.js's own `ssl` is off, and sslrootcert &
 * co. are never passed to the server as settings (a postgres.js habit with unknown URI parameters).
 */
import {
  type ConnectionInput,
  type ConnectionPlan,
  type Environment,
  type ResolveOptions,
  resolve,
} from '../resolve.js';
import { PgtlsSocket } from '../stream.js';
import { isPlan } from './pg.js';

export interface PostgresJsOptions {
  host: string;
  port: number;
  user: string;
  database: string;
  pass?: string;
  ssl: false;
  connection: Record<string, string>;
  connect_timeout?: number;
  socket: (options?: { pass?: unknown }) => Promise<PgtlsSocket>;
  pgtlsPlan: ConnectionPlan;
  [key: string]: unknown;
}

export interface PgtlsPostgresOptions extends ResolveOptions {
  readonly env?: Environment;
  readonly onSocket?: (socket: PgtlsSocket) => void;
}

export function pgtlsPostgres(
  input: ConnectionInput | ConnectionPlan,
  opts: PgtlsPostgresOptions = {},
): PostgresJsOptions {
  const plan = isPlan(input) ? input : resolve(input, opts.env ?? process.env, opts);
  const first = plan.hosts[0];
  const p = plan.params;
  const connection: Record<string, string> = {};
  const app = p.application_name || p.fallback_application_name;
  if (app) connection.application_name = app;
  if (p.options) connection.options = p.options;
  if (p.client_encoding) connection.client_encoding = p.client_encoding;
  return {
    host: first?.host || first?.hostaddr || 'localhost',
    port: Number(first?.port || 5432) || 5432,
    user: plan.user,
    database: plan.database,
    ...(first?.password === undefined ? {} : { pass: first.password }),
    ssl: false,
    connection,
    ...(plan.connectTimeoutSeconds > 0 ? { connect_timeout: plan.connectTimeoutSeconds } : {}),
    socket: async (options?: { pass?: unknown }) => {
      const s = new PgtlsSocket(plan);
      // postgres.js hands us its options: no password there means libpq's "fe_sendauth: no password supplied".
      if (options && (options.pass === undefined || options.pass === null || options.pass === '')) {
        s.driverHasPassword = false;
      }
      opts.onSocket?.(s);
      return s.ready();
    },
    pgtlsPlan: plan,
  };
}

export default pgtlsPostgres;
