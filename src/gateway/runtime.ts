/** What a connection needs from the gateway: the state in force, and the few services it calls back into. */
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/load.js';
import type { HbaLine } from '../hba/hba.js';
import type { IdentLine } from '../hba/ident.js';
import type { TrustedRange } from '../hba/proxy-trusted.js';
import type { TlsStore } from '../tls/context.js';
import type { SniSelector } from '../tls/sni.js';
import type { Operator } from './operator.js';
import type { Pools } from './pool/pools.js';
import type { Route } from './routes.js';
import type { SecretSource } from './secrets.js';
import type { ClientTransport } from './transport.js';
import type { UpstreamTarget } from './upstream.js';

/** One structured log record per connection. Never holds keys, passwords or message contents. */
export interface ConnectionRecord {
  /** The gateway's own id for the connection (unique per process; the admin console's KILL CLIENT takes it). */
  id: number;
  client: string;
  client_port: number;
  negotiation: 'plaintext' | 'sslrequest' | 'direct';
  sni?: string;
  alpn?: string;
  tls_version?: string | undefined;
  cipher?: string | undefined;
  /** Key-exchange group, when the transport can tell (the native one). */
  group?: string;
  client_cert?: { subject: string; serial: string; issuer: string; not_after: string };
  /** OpenSSL's reason when a presented client certificate did not verify. */
  client_cert_error?: string;
  user?: string;
  database?: string;
  application_name?: string;
  /** file:line of the pg_hba.conf line that matched. */
  hba?: string;
  authenticated_as?: string;
  /** How the gateway authenticated the client itself (scram-sha-256, scram-sha-256-plus, md5, password). */
  auth_method?: string;
  /** SCRAM-SHA-256-PLUS: the channel binding was checked. */
  channel_binding?: boolean;
  /** How the gateway logged in to the backend (trust, password, md5, scram, scram-plus). */
  backend_auth?: string;
  outcome: 'relayed' | 'refused' | 'cancel' | 'closed' | 'error';
  reason?: string;
  sqlstate?: string;
  upstream_error?: string;
  /** host:port the session's backend connection is on, when the upstream lists several hosts. */
  upstream_host?: string;
  /** Set when a trusted load balancer sent a PROXY header: the peer that sent it (client/client_port are the header's). */
  proxy?: { peer: string; peer_port: number; version: 1 | 2; command: 'LOCAL' | 'PROXY' };
  /** file:line of the routes_file line that chose the upstream. */
  route?: string;
  /** file:line of the pg_hosts.conf entry whose certificate was served (ssl_sni). */
  hosts_line?: string;
  /** report_* policy: why this session would have been refused under it (it was not). */
  would_refuse?: string[];
  /** pool_mode session/transaction: the mode, and the pid of the gateway-made key the client got. */
  pooled?: { mode: string; backend_key_pid: number };
  /** The backend process the session is relayed to (from BackendKeyData). */
  backend_pid?: number;
  bytes_from_client?: number;
  bytes_from_backend?: number;
  duration_ms?: number;
}

export interface GatewayRuntime {
  readonly config: GatewayConfig;
  readonly hba: readonly HbaLine[];
  readonly ident: readonly IdentLine[];
  readonly tls: TlsStore;
  /** ssl_sni with pg_hosts.conf entries: chooses the material per connection (undefined: `tls` serves everyone). */
  readonly sni?: SniSelector | undefined;
  /** auth_file / auth_query: set when the gateway authenticates password-method lines itself. */
  readonly secrets?: SecretSource | undefined;
  /** Per-gateway random bytes for SCRAM mock salts (unknown users look like known ones). */
  readonly mockSecret: Buffer;
  /** pool_mode = session | transaction (undefined: the 1:1 relay). */
  readonly pools?: Pools | undefined;
  /** Registry, metrics, report-only policy, runtime SETs, the console's view. */
  readonly operator: Operator;
  /** routes_file's routes, in file order. */
  readonly routes: readonly Route[];
  /** proxy_protocol_trusted, parsed. */
  readonly proxyTrusted: readonly TrustedRange[];
  readonly upstream: UpstreamTarget;
  readonly shuttingDown: boolean;
  /** The TLS transport for client handshakes (undefined: Node's). */
  readonly transport?: ClientTransport | undefined;
  /** Client connections open now (for max_client_conn). */
  readonly clientCount: number;
  nextConnectionId(): number;
  cancel(pid: number, key: Buffer, record: ConnectionRecord): Promise<void>;
  /** Remember a session's cancel key; returns the function that forgets it. */
  registerCancelKey(pid: number, key: Buffer, upstream?: UpstreamTarget): () => void;
  /**
   * Track an established session for shutdown (it gets shutdown_timeout to finish, then both ends are destroyed);
   * returns the function that untracks it. A pooled session has no backend of its own: destroying the client ends
   * its relay, and the pool closes the server it held.
   */
  trackSession(client: Duplex, backend?: Duplex): () => void;
  emitConnection(record: ConnectionRecord): void;
}
