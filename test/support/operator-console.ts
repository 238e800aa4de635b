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
import { handleConsoleQuery } from '../../src/gateway/admin/console.js';
import type {
  ConsoleRole,
  LiveClient,
  OperatorView,
  ReloadResult,
  RuntimeOverride,
  RuntimeSetting,
  ServedFile,
  StatsSnapshot,
} from '../../src/gateway/admin/runtime-view.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { type ReportPolicy, WouldRefuseRecorder, compileReportPolicy } from '../../src/gateway/report-policy.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';
import type { TlsFacts } from '../../src/gateway/transport.js';
import { type HbaLine, readHbaFile } from '../../src/hba/hba.js';
import { encodeErrorResponse } from '../../src/protocol/error-response.js';
import { MessageReader } from '../../src/protocol/framing.js';
import {
  decodeQuery,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../../src/protocol/rows.js';
import { decodeInitialPacket, parseStartupMessage } from '../../src/protocol/startup.js';

interface Live {
  client: LiveClient & ConnectionRecord;
  socket: Socket;
}

/** An OperatorView over real files and the server's own live connections. */
export class FileView implements OperatorView {
  readonly version = '0.1.0-test';
  #config: GatewayConfig;
  #hba: HbaLine[];
  #policy: ReportPolicy;
  readonly live = new Map<number, Live>();
  readonly overridesMap = new Map<RuntimeSetting, RuntimeOverride>();
  readonly metrics = new GatewayMetrics({ defaultMetrics: false });
  readonly recorder: WouldRefuseRecorder;
  reloads = 0;

  constructor(readonly configFile: string) {
    this.#config = loadConfig({ file: configFile, env: {} });
    this.#hba = this.#config.hba_file ? readHbaFile(this.#config.hba_file) : [];
    this.#policy = compileReportPolicy(this.#config);
    this.recorder = new WouldRefuseRecorder(this.#config.report_list_size);
  }

  get policy(): ReportPolicy {
    return this.#policy;
  }
  clients(): Iterable<LiveClient> {
    return [...this.live.values()].map((l) => l.client);
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
    const c = this.#config;
    const out: ServedFile[] = [];
    if (c.ssl_cert_file) out.push({ path: c.ssl_cert_file, kind: 'server' });
    if (c.ssl_ca_file) out.push({ path: c.ssl_ca_file, kind: 'ca' });
    if (c.ssl_crl_file) out.push({ path: c.ssl_crl_file, kind: 'crl' });
    return out;
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
      this.metrics.reload(true);
      return { ok: true };
    } catch (e) {
      this.metrics.reload(false);
      return { ok: false, error: (e as Error).message };
    }
  }
  setRuntime(key: RuntimeSetting, value: string): void {
    this.overridesMap.set(key, { value, since: new Date() });
  }
  kill(id: number): boolean {
    const l = this.live.get(id);
    if (!l) return false;
    l.socket.destroy();
    return true;
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

const PARAMS: [string, string][] = [
  ['server_version', '18.0 (pgtls console)'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO, MDY'],
  ['TimeZone', 'UTC'],
  ['integer_datetimes', 'on'],
  ['standard_conforming_strings', 'on'],
  ['application_name', ''],
];

export async function startConsoleServer(
  view: FileView,
  tls: { cert: Buffer; key: Buffer; ca?: Buffer },
  roles: Readonly<Record<string, ConsoleRole>>,
): Promise<ConsoleServer> {
  let nextId = 1;
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => undefined);
    void serve(raw, nextId++).catch(() => raw.destroy());
  });

  async function serve(raw: Socket, id: number): Promise<void> {
    const started = Date.now();
    const record: ConnectionRecord = {
      client: raw.remoteAddress?.replace(/^::ffff:/, '') ?? '',
      client_port: raw.remotePort ?? 0,
      negotiation: 'plaintext',
      outcome: 'closed',
    };
    let stream: Socket = raw;
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
        view.metrics.handshake((Date.now() - hs) / 1000, 'ok');
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
        record.negotiation = 'sslrequest';
        record.tls_version = tlsFacts.version;
        record.cipher = tlsFacts.cipher;
        if (servername) record.sni = servername;
        if (peer) {
          record.client_cert = {
            subject: peer.subject.split('\n').reverse().join(','),
            serial: peer.serialNumber.toLowerCase(),
            issuer: peer.issuer.split('\n').reverse().join(','),
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
      const role = roles[sp.user];
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
      // What the gateway does after its startup phase: evaluate, count, (log).
      view.metrics.wouldRefuse(view.recorder.consider(view.policy, record));
      const pid = 40000 + id;
      const client = {
        ...record,
        id,
        connect_time: new Date(started),
        state: 'active' as const,
        backend_pid: pid,
        ...(tlsFacts ? { tls: tlsFacts } : {}),
      };
      view.live.set(id, { client, socket: stream });
      view.metrics.sessionStarted();
      stream.write(
        Buffer.concat([
          encodeAuthenticationOk(),
          ...PARAMS.map(([k, v]) => encodeParameterStatus(k, v)),
          encodeBackendKeyData(pid, randomBytes(4)),
          encodeReadyForQuery('I'),
        ]),
      );
      const reader = new MessageReader(1 << 20);
      reader.push(buf);
      stream.resume();
      await new Promise<void>((resolve) => {
        let chain = Promise.resolve();
        const pump = () => {
          for (let m = reader.next(); m; m = reader.next()) {
            const type = String.fromCharCode(m.type);
            client.bytes_from_client = (client.bytes_from_client ?? 0) + m.frame.length;
            if (type === 'X') {
              stream.end();
              return;
            }
            if (type !== 'Q') {
              stream.end(
                encodeErrorResponse({
                  severity: 'FATAL',
                  code: '08P01',
                  message: 'extended query protocol not supported by admin console',
                }),
              );
              return;
            }
            const sql = decodeQuery(m.body);
            chain = chain.then(async () => {
              const out = Buffer.concat([await handleConsoleQuery(sql, view, role), encodeReadyForQuery('I')]);
              client.bytes_from_backend = (client.bytes_from_backend ?? 0) + out.length;
              if (!stream.destroyed) stream.write(out);
            });
          }
        };
        stream.on('data', (d: Buffer) => {
          reader.push(d);
          pump();
        });
        pump();
        stream.once('close', () => resolve());
      });
    } finally {
      const live = view.live.get(id);
      if (live) {
        view.live.delete(id);
        view.metrics.sessionEnded();
        Object.assign(record, {
          bytes_from_client: live.client.bytes_from_client,
          bytes_from_backend: live.client.bytes_from_backend,
        });
      }
      record.duration_ms = Date.now() - started;
      view.metrics.observe(record);
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
