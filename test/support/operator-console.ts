/**
 * A tiny PostgreSQL-speaking server for the admin console tests: it accepts SSLRequest and upgrades to TLS with real
 * certificates, skips authentication (AuthenticationOk) for users the test names admin or stats, refuses others with
 * PostgreSQL's usual text, and answers simple Queries with handleConsoleQuery(). Its OperatorView is built from real
 * data: a configuration file loaded by loadConfig, an hba file parsed by src/hba/hba.ts, generated certificate
 * files, and its own live connections with the TLS facts their handshakes really produced.
 */
import { randomBytes } from 'node:crypto';
import { type Server, type Socket, createServer } from 'node:net';
import { TLSSocket } from 'node:tls';
import { type GatewayConfig, loadConfig } from '../../src/config/load.js';
import { servedFilesOf } from '../../src/gateway/admin/cert-files.js';
import { ClientRegistry } from '../../src/gateway/admin/client-registry.js';
import { OperatorHooks } from '../../src/gateway/admin/operator-hooks.js';
import type {
  LiveClient,
  OperatorView,
  ReloadResult,
  RuntimeOverride,
  RuntimeSetting,
  ServedFile,
  StatsSnapshot,
} from '../../src/gateway/admin/runtime-view.js';
import { consoleRole, runConsoleSession } from '../../src/gateway/admin/session.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { type ReportPolicy, WouldRefuseRecorder, compileReportPolicy } from '../../src/gateway/report-policy.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';
import type { TlsFacts } from '../../src/gateway/transport.js';
import { type HbaLine, readHbaFile } from '../../src/hba/hba.js';
import { encodeErrorResponse } from '../../src/protocol/error-response.js';
import { decodeInitialPacket, parseStartupMessage } from '../../src/protocol/startup.js';

/** An OperatorView over real files and the server's own live connections. */
export class FileView implements OperatorView {
  readonly version = '0.1.0-test';
  #config: GatewayConfig;
  #hba: HbaLine[];
  #policy: ReportPolicy;
  readonly registry = new ClientRegistry();
  readonly overridesMap = new Map<RuntimeSetting, RuntimeOverride>();
  readonly metrics = new GatewayMetrics({ defaultMetrics: false });
  readonly recorder: WouldRefuseRecorder;
  reloads = 0;

  constructor(readonly configFile: string) {
    this.#config = loadConfig({ file: configFile, env: {} });
    this.#hba = this.#config.hba_file ? readHbaFile(this.#config.hba_file) : [];
    this.#policy = compileReportPolicy(this.#config);
    this.recorder = new WouldRefuseRecorder(this.#config.report_list_size);
    this.hooks = new OperatorHooks({ metrics: this.metrics, recorder: this.recorder, policy: () => this.#policy });
  }
  readonly hooks: OperatorHooks;

  get policy(): ReportPolicy {
    return this.#policy;
  }
  clients(): Iterable<LiveClient> {
    return this.registry.clients();
  }
  config(): GatewayConfig {
    return this.#config;
  }
  overrides(): ReadonlyMap<RuntimeSetting, RuntimeOverride> {
    return this.overridesMap;
  }
  hba(): readonly HbaLine[] {
    return this.#hba;
  }
  servedFiles(): readonly ServedFile[] {
    return servedFilesOf(this.#config);
  }
  async reload(): Promise<ReloadResult> {
    try {
      const config = loadConfig({ file: this.configFile, env: {} });
      const hba = config.hba_file ? readHbaFile(config.hba_file) : [];
      this.#config = config;
      this.#hba = hba;
      this.#policy = compileReportPolicy(config);
      this.overridesMap.clear();
      this.reloads++;
      this.hooks.reload(true);
      return { ok: true };
    } catch (e) {
      this.hooks.reload(false);
      return { ok: false, error: (e as Error).message };
    }
  }
  setRuntime(key: RuntimeSetting, value: string): void {
    this.overridesMap.set(key, { value, since: new Date() });
  }
  kill(id: number): boolean {
    return this.registry.kill(id);
  }
  stats(): StatsSnapshot {
    return this.metrics.snapshot();
  }
  wouldRefuse() {
    return this.recorder.entries();
  }
}

export interface ConsoleServer {
  readonly port: number;
  readonly view: FileView;
  close(): Promise<void>;
}

export async function startConsoleServer(
  view: FileView,
  tls: { cert: Buffer; key: Buffer; ca?: Buffer },
): Promise<ConsoleServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => undefined);
    void serve(raw).catch(() => raw.destroy());
  });

  let connectionIds = 0;
  async function serve(raw: Socket): Promise<void> {
    const started = Date.now();
    const record: ConnectionRecord = {
      id: ++connectionIds,
      client: raw.remoteAddress?.replace(/^::ffff:/, '') ?? '',
      client_port: raw.remotePort ?? 0,
      negotiation: 'plaintext',
      outcome: 'closed',
    };
    let stream: Socket = raw;
    // The gateway's order: register on accept, update per phase, end once.
    const handle = view.registry.register(record, () => stream.destroy(), new Date(started));
    const stats = { bytesFromClient: 0, bytesFromBackend: 0 };
    let relayedPid: number | undefined;
    let buf = Buffer.alloc(0);
    const readPacket = async (): Promise<ReturnType<typeof decodeInitialPacket>> => {
      for (let i = 0; i < 1000; i++) {
        const d = decodeInitialPacket(buf);
        if (d.status !== 'incomplete') {
          if (d.status === 'packet') buf = buf.subarray(d.consumed);
          return d;
        }
        const chunk = await new Promise<Buffer | undefined>((resolve) => {
          stream.once('data', resolve);
          stream.once('close', () => resolve(undefined));
          // A packet may come in several chunks (pgjdbc writes its StartupMessage in pieces): flow again.
          stream.resume();
        });
        if (!chunk) return { status: 'incomplete' };
        buf = Buffer.concat([buf, chunk]);
        stream.pause();
      }
      return { status: 'incomplete' };
    };
    let tlsFacts: TlsFacts | undefined;
    try {
      let first = await readPacket();
      if (first.status === 'packet' && first.packet.kind === 'SSLRequest') {
        raw.write('S');
        const t = new TLSSocket(raw, {
          isServer: true,
          cert: tls.cert,
          key: tls.key,
          ...(tls.ca ? { ca: tls.ca, requestCert: true } : {}),
          rejectUnauthorized: false,
        });
        const hs = Date.now();
        await new Promise<void>((resolve, reject) => {
          t.once('secure', resolve);
          t.once('error', reject);
        });
        view.hooks.handshake((Date.now() - hs) / 1000, true);
        const cipher = t.getCipher();
        const peer = t.getPeerX509Certificate();
        const eph = t.getEphemeralKeyInfo() as { name?: string } | null;
        const servername = (t as TLSSocket & { servername?: string | false }).servername;
        tlsFacts = {
          version: t.getProtocol() ?? '',
          cipher: cipher.name,
          bits: cipher.name.includes('AES_128') || cipher.name.includes('AES128') ? 128 : 256,
          ...(eph?.name ? { group: eph.name } : {}),
          ...(servername ? { sni: servername } : {}),
          ...(typeof t.alpnProtocol === 'string' ? { alpn: t.alpnProtocol } : {}),
          ...(peer ? { peerCertificate: peer.raw } : {}),
        };
        handle.setTls(tlsFacts);
        handle.setState('startup');
        record.negotiation = 'sslrequest';
        record.tls_version = tlsFacts.version;
        record.cipher = tlsFacts.cipher;
        if (servername) record.sni = servername;
        if (peer) {
          record.client_cert = {
            subject: peer.subject.split('\n').reverse().join(','),
            serial: peer.serialNumber.toLowerCase(),
            issuer: peer.issuer.split('\n').reverse().join(','),
            not_after: new Date(peer.validTo).toISOString(),
          };
        }
        stream = t;
        buf = Buffer.alloc(0);
        first = await readPacket();
      }
      if (first.status !== 'packet' || first.packet.kind !== 'StartupMessage') {
        stream.destroy();
        return;
      }
      const parsed = parseStartupMessage(first.packet.code, first.packet.body);
      if (!parsed.ok) {
        stream.destroy();
        return;
      }
      const sp = parsed.value;
      record.user = sp.user;
      record.database = sp.database;
      const app = sp.params.find(([k]) => k === 'application_name')?.[1];
      if (app !== undefined) record.application_name = app;
      // admin_users / stats_users from the configuration file, as the gateway reads them.
      const role = consoleRole(view.config(), sp.user);
      if (!role || sp.database !== 'pgtls') {
        record.outcome = 'refused';
        record.reason = `no pg_hba.conf entry for host "${record.client}", user "${sp.user}", database "${sp.database}", SSL encryption`;
        record.sqlstate = '28000';
        stream.end(
          encodeErrorResponse({
            severity: 'FATAL',
            code: '28000',
            message: `no pg_hba.conf entry for host "${record.client}", user "${sp.user}", database "${sp.database}", ${tlsFacts ? 'SSL encryption' : 'no encryption'}`,
          }),
        );
        return;
      }
      record.hba = `${view.config().hba_file}:1`;
      record.outcome = 'relayed';
      const pid = 40000 + handle.id;
      relayedPid = pid;
      handle.setState('active');
      handle.setBackendPid(pid);
      handle.setRelayStats(stats);
      view.hooks.sessionRelayed(record, tlsFacts, pid);
      // The product's console session: greeting, then the simple-query loop.
      await runConsoleSession(stream, {
        view,
        role,
        sendAuthenticationOk: true,
        backendKey: { pid, key: randomBytes(4) },
        pending: buf,
        stats,
      });
    } finally {
      if (relayedPid !== undefined) {
        view.hooks.sessionEnded(record, relayedPid);
        record.bytes_from_client = stats.bytesFromClient;
        record.bytes_from_backend = stats.bytesFromBackend;
      }
      handle.end();
      record.duration_ms = Date.now() - started;
      view.hooks.connectionEnded(record);
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    view,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
