/**
 * The setup the pooled native-plane tests share: a real PostgreSQL with one SCRAM role, a gateway that authenticates
 * it from an auth_file (PgBouncer's userlist.txt, the role's own SCRAM secret) and pools it, and node-postgres
 * clients for it over TLS.
 */
import pg from 'pg';
import { type GatewayFixtures, writeFixture } from './gateway-fixtures.js';
import { type TestGateway, startTestGateway } from './gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster } from './postgres.js';

export interface PooledGateway {
  readonly gw: TestGateway;
  /** The role's userlist.txt line (`"role" "SCRAM-SHA-256$…"`), for a second gateway. */
  readonly userlistLine: string;
  /** A node-postgres client for the role through the gateway (TLS, the certificate not checked). */
  client(): pg.Client;
}

/** Create `role` with `password` on `cluster` and start a gateway pooling it with `settings` (pool_mode, sizes). */
export async function startPooledGateway(
  fx: GatewayFixtures,
  cluster: TestCluster,
  role: string,
  password: string,
  settings: Record<string, string>,
): Promise<PooledGateway> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  try {
    await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    const r = await c.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]);
    const userlistLine = `"${role}" "${(r.rows[0] as { rolpassword: string }).rolpassword}"\n`;
    const userlist = writeFixture(fx, `${role}-userlist.txt`, userlistLine, 0o600);
    const hba = writeFixture(fx, `${role}-hba.conf`, `hostssl all ${role} all scram-sha-256\n`);
    const gw = await startTestGateway(fx, cluster, { hba_file: hba, auth_file: userlist, ...settings });
    const client = () =>
      new pg.Client({
        host: '127.0.0.1',
        port: gw.port,
        user: role,
        password,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
      });
    return { gw, userlistLine, client };
  } finally {
    await c.end();
  }
}
