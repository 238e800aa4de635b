/**
 * Phase 2, startup: the StartupMessage is parsed and checked, and the rules that PostgreSQL applies before any
 * authentication exchange decide whether the session may go on — shutdown, require_secure_transport, the matching
 * pg_hba.conf line, `reject`, clientcert= and the certificate half of the `cert` method. Mirrors the second half of
 * ProcessStartupPacket() and the start of ClientAuthentication() of PostgreSQL 18.
 */
import type { HbaLine, HbaMethod } from '../../hba/hba.js';
import { checkUsermap } from '../../hba/ident.js';
import { matchHbaNow } from '../../hba/match.js';
import type { WireError } from '../../protocol/error-response.js';
import { type StartupParameters, parseStartupMessage } from '../../protocol/startup.js';
import { peerSubjects } from '../client-cert.js';
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import { chooseRoute } from '../routes.js';
import { peerCertificate } from '../transport-node.js';
import type { StartupPacket } from './negotiate.js';

/** PostgreSQL truncates user and database names to NAMEDATALEN - 1 bytes (at a character boundary). */
function truncateName(name: string): string {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: 21 units or fewer always fit, without encoding them.
  if (name.length <= 21) return name;
  const b = Buffer.from(name, 'utf8');
  if (b.length <= 63) return name;
  let s = b.subarray(0, 63).toString('utf8');
  if (s.endsWith('\uFFFD')) s = s.slice(0, -1);
  return s;
}

export interface Admitted {
  readonly params: StartupParameters;
  readonly who: refuse.Who;
  readonly line: HbaLine;
}

/** Resolves with what authentication needs, or undefined when the client was refused (the FATAL is sent). */
export async function startup(c: ClientConnection, packet: StartupPacket): Promise<Admitted | undefined> {
  const { record, rt, cfg } = c;
  const parsed = parseStartupMessage(packet.code, packet.body);
  if (!parsed.ok) {
    c.fatal(parsed.error, undefined, packet.code >>> 16);
    return undefined;
  }
  const sp = parsed.value;
  // A route may pick another upstream, and strip Azure's @servername from the user (before hba sees it).
  const choice = chooseRoute(rt.routes, {
    sni: c.tls?.facts.sni,
    database: truncateName(sp.database),
    user: sp.user,
  });
  if (choice) {
    c.upstream = choice.route.upstream;
    record.route = choice.route.where;
    if (choice.user !== sp.user) c.backendUser = choice.user;
  }
  const who: refuse.Who = {
    host: record.client,
    user: truncateName(choice?.user ?? sp.user),
    database: truncateName(sp.database),
    ssl: c.tls !== undefined,
    replication: sp.replication,
  };
  record.user = who.user;
  record.database = who.database;
  const app = sp.params.find(([k]) => k === 'application_name');
  if (app) record.application_name = app[1];
  if (rt.shuttingDown) {
    c.fatal(refuse.shuttingDown());
    return undefined;
  }
  const limit = cfg.max_client_conn;
  if (limit > 0 && rt.clientCount > limit) {
    c.fatal(refuse.tooManyClients(limit), `max_client_conn (${limit}) reached`);
    return undefined;
  }
  // A Unix socket never leaves the host, so it counts as secure transport (as MySQL's require_secure_transport).
  if (cfg.require_secure_transport && !c.tls && !c.local) {
    c.fatal(
      refuse.plaintextRefused(who, cfg.error_style),
      'plaintext refused: require_secure_transport = on (the client did not request SSL)',
    );
    return undefined;
  }
  // One literal shape for every connection (a spread of an optional address made V8 define it the slow way).
  const found = matchHbaNow(rt.hba, {
    address: c.local ? undefined : record.client,
    ssl: who.ssl,
    user: who.user,
    database: who.database,
    replication: sp.replication,
  });
  const line = found instanceof Promise ? await found : found;
  if (!line) {
    c.fatal(refuse.noHbaEntry(who));
    return undefined;
  }
  record.hba = `${line.file}:${line.line}`;
  const denial = checkLine(c, line, who);
  if (denial) {
    c.fatal(denial, record.reason);
    return undefined;
  }
  return { params: sp, who, line };
}

/** clientcert=, cert method, reject: the checks ClientAuthentication() makes for the matched line. */
function checkLine(c: ClientConnection, line: HbaLine, who: refuse.Who): WireError | undefined {
  if (line.method === 'reject') return refuse.hbaRejects(who);
  if (line.clientcert === 'off') return undefined;
  if (!(c.material ?? c.rt.tls.current()).requestCert) return refuse.noRootStore();
  const peer = peerCertificate(c.tls?.facts);
  if (!c.tls || !peer || c.tls.facts.peerVerifyError !== undefined) return refuse.clientCertRequired();
  if (line.clientcert !== 'verify-full') return undefined;
  const subj = peerSubjects(peer);
  const name = line.clientname === 'DN' ? subj.dn : subj.cn;
  const method: HbaMethod = line.method;
  if (name === '') {
    c.record.reason = `certificate authentication failed for user "${who.user}": client certificate contains no user name`;
    return refuse.authFailed(method, who.user);
  }
  const m = checkUsermap(c.rt.ident, line.map, who.user, name);
  if (!m.ok) {
    c.record.reason =
      method === 'cert'
        ? m.reason
        : `certificate validation (clientcert=verify-full) failed for user "${who.user}": CN mismatch`;
    return refuse.authFailed(method, who.user);
  }
  c.record.authenticated_as = name;
  return undefined;
}
