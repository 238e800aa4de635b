/**
 * PostgreSQL 19's `ssl_sni` for the gateway: one TlsMaterial per pg_hosts.conf entry, built by the same loader as
 * the main ssl_* settings (src/tls/context.ts), and the choice among them by TLS server name.
 *
 * As be_tls_init() does: with ssl_sni off, or with hosts_file missing or without entries, the main ssl_* settings
 * serve every connection. Otherwise only pg_hosts.conf counts: each entry brings its certificate, key, client CA
 * (none: no client certificate is requested) and passphrase command; the CRL settings and the protocol, cipher and
 * group settings are the main ones for every entry ("The CRL configuration in postgresql.conf is applied on all
 * connections regardless of if they use SNI or not").
 *
 * Two ways to apply the choice to a connection:
 * - decide(bytes): from the ClientHello read off the socket before TLS starts (src/protocol/tls-client-hello.ts).
 *   Exact: the refusal is PostgreSQL's alert, and requestCert is the chosen entry's. The gateway then creates its
 *   TLSSocket with the chosen material and unshifts the bytes.
 * - SNICallback / defaultContext: Node's own hook, for a TLSSocket created without looking at the ClientHello. Node
 *   cannot send unrecognized_name and fixes requestCert per socket, so there an unknown name is refused with
 *   handshake_failure (a context without a certificate) instead; see docs/edge.md.
 */
import { type SecureContext, createSecureContext } from 'node:tls';
import { PgtlsError } from '../errors.js';
import { type HostsEntry, type HostsFileResult, readHostsFile, selectHost } from '../hba/hosts.js';
import { type TlsAlertName, decodeClientHello, encodeTlsAlert } from '../protocol/tls-client-hello.js';
import { type TlsMaterial, type TlsSettings, TlsStore, loadTlsMaterial } from './context.js';

export interface SniSettings extends TlsSettings {
  readonly ssl_sni: boolean;
  readonly hosts_file: string;
}

interface Slot {
  /** undefined for the main ssl_* settings (ssl_sni off, or no pg_hosts.conf entries). */
  readonly entry: HostsEntry | undefined;
  readonly hostnames: readonly string[];
  readonly store: TlsStore;
}

export type SniDecision =
  | { readonly status: 'need-more' }
  | { readonly status: 'selected'; readonly material: TlsMaterial; readonly entry: HostsEntry | undefined }
  | {
      readonly status: 'refused';
      readonly alert: TlsAlertName;
      /** The alert record to write before closing. */
      readonly record: Buffer;
      /** For the connection log, as PostgreSQL words it where it logs one. */
      readonly reason: string;
    };

export class SniSelector {
  readonly #sni: readonly Slot[];
  readonly #noSni: Slot | undefined;
  readonly #default: Slot | undefined;
  readonly #refusing: SecureContext;
  /** How pg_hosts.conf was found: 'disabled' (ssl_sni off), 'missing', 'empty' or 'ok'. */
  readonly source: 'disabled' | HostsFileResult['status'];

  constructor(parts: {
    sni: readonly Slot[];
    noSni: Slot | undefined;
    defaultHost: Slot | undefined;
    source: SniSelector['source'];
    settings: TlsSettings;
  }) {
    this.#sni = parts.sni;
    this.#noSni = parts.noSni;
    this.#default = parts.defaultHost;
    this.source = parts.source;
    // No certificate: OpenSSL can choose no cipher suite / signature and answers handshake_failure.
    this.#refusing = createSecureContext({
      minVersion: parts.settings.ssl_min_protocol_version,
      maxVersion: parts.settings.ssl_max_protocol_version === '' ? 'TLSv1.3' : parts.settings.ssl_max_protocol_version,
    });
  }

  /** Every material in force (for reload reuse, status pages and tests). */
  materials(): { entry: HostsEntry | undefined; material: TlsMaterial }[] {
    const slots = [...this.#sni, ...(this.#noSni ? [this.#noSni] : []), ...(this.#default ? [this.#default] : [])];
    return slots.map((s) => ({ entry: s.entry, material: s.store.current() }));
  }

  /** sni_clienthello_cb()'s choice for a server name (undefined: the client sent none). */
  select(
    servername: string | undefined,
  ):
    | { material: TlsMaterial; entry: HostsEntry | undefined }
    | { alert: 'unrecognized_name' | 'handshake_failure'; reason: string } {
    const r = selectHost({ sni: this.#sni, noSni: this.#noSni, defaultHost: this.#default }, servername);
    if ('alert' in r) return r;
    return { material: r.entry.store.current(), entry: r.entry.entry };
  }

  /** Decide from the bytes the client sent after the SSLRequest answer (or from its first byte, for direct TLS). */
  decide(clientBytes: Uint8Array): SniDecision {
    const hello = decodeClientHello(clientBytes);
    if (hello.status === 'need-more') return hello;
    if (hello.status === 'invalid') {
      return { status: 'refused', alert: 'decode_error', record: encodeTlsAlert('decode_error'), reason: hello.reason };
    }
    const r = this.select(hello.servername);
    if ('alert' in r) return { status: 'refused', alert: r.alert, record: encodeTlsAlert(r.alert), reason: r.reason };
    return { status: 'selected', material: r.material, entry: r.entry };
  }

  /** For a TLSSocket's `secureContext`: what a client without SNI gets (or a context that refuses it). */
  get defaultContext(): SecureContext {
    const s = this.#noSni ?? this.#default;
    return s ? s.store.current().context : this.#refusing;
  }

  /** Node's SNICallback: called only when the client sent a name. Unknown names get the refusing context. */
  readonly SNICallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const r = this.select(servername);
    cb(null, 'alert' in r ? this.#refusing : r.material.context);
  };
}

/**
 * be_tls_init() for ssl_sni: read hosts_file (when ssl_sni is on) and load every entry's material; the first problem
 * throws (a PgtlsError naming the file, and for an entry's files also the pg_hosts.conf line in details.hosts_line).
 * On reload, pass the selector in force: an entry whose encrypted key cannot be re-read without the passphrase keeps
 * the key already loaded from the same file, as the main ssl_key_file does (src/tls/context.ts).
 */
export function loadSniSelector(
  s: SniSettings,
  opts: { isReload?: boolean; previous?: SniSelector } = {},
): SniSelector {
  const prev = opts.previous?.materials() ?? [];
  const build = (settings: TlsSettings, entry: HostsEntry | undefined): Slot => {
    const previous = prev.find((p) => p.material.settings.ssl_key_file === settings.ssl_key_file)?.material;
    try {
      const material = loadTlsMaterial(settings, {
        ...(opts.isReload ? { isReload: true } : {}),
        ...(previous ? { previous } : {}),
      });
      return { entry, hostnames: entry?.hostnames ?? ['*'], store: new TlsStore(material) };
    } catch (e) {
      if (!entry || !(e instanceof PgtlsError)) throw e;
      throw new PgtlsError(e.code, e.message, {
        cause: e,
        details: { ...e.details, hosts_line: `${entry.file}:${entry.line}` },
      });
    }
  };
  let result: HostsFileResult | undefined;
  if (s.ssl_sni && s.hosts_file !== '') result = readHostsFile(s.hosts_file);
  if (!result || result.status !== 'ok') {
    // ssl_sni off, no hosts_file, or a missing/empty one: postgresql.conf's settings are the default host.
    const main = build(s, undefined);
    return new SniSelector({
      sni: [],
      noSni: undefined,
      defaultHost: main,
      source: s.ssl_sni ? (result?.status ?? 'missing') : 'disabled',
      settings: s,
    });
  }
  const forEntry = (e: HostsEntry): Slot =>
    build(
      {
        ...s,
        ssl_cert_file: e.ssl_cert_file,
        ssl_key_file: e.ssl_key_file,
        // Only the entry's CA counts: ssl_ca_file does not apply to pg_hosts.conf entries (004_sni.pl).
        ssl_ca_file: e.ssl_ca_file,
        ssl_passphrase_command: e.ssl_passphrase_command,
        ssl_passphrase_command_supports_reload: e.ssl_passphrase_command_supports_reload,
      },
      e,
    );
  const h = result.hosts;
  return new SniSelector({
    sni: h.sni.map(forEntry),
    noSni: h.noSni ? forEntry(h.noSni) : undefined,
    defaultHost: h.defaultHost ? forEntry(h.defaultHost) : undefined,
    source: 'ok',
    settings: s,
  });
}
