/**
 * Can any client complete a handshake with this material? A configuration can load cleanly and still refuse every
 * client: an ECDSA key (what `pgtls cert server` makes) with an RSA-only TLS 1.2 cipher list (Azure Single Server's)
 * and TLS 1.3 excluded gives "no shared cipher" to everyone. PostgreSQL starts anyway; the gateway refuses such a
 * configuration at start, in `serve --check` and on reload, by trying one handshake in memory with a client that
 * offers every suite and version the settings allow.
 */
import { Duplex } from 'node:stream';
import { TLSSocket, connect } from 'node:tls';
import { PgtlsError } from '../errors.js';
import { ERR_TLS_CONFIG, type TlsMaterial } from './context.js';

/** Two connected in-memory streams (Node 20 has no stream.duplexPair). */
function duplexPair(): [Duplex, Duplex] {
  const make = (): Duplex & { peer?: Duplex } => {
    const d: Duplex & { peer?: Duplex } = new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        d.peer!.push(chunk);
        cb();
      },
      final(cb) {
        d.peer!.push(null);
        cb();
      },
    });
    return d;
  };
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** OpenSSL's reason ("no shared cipher") when no handshake is possible, undefined when one succeeded. */
export async function selfHandshake(material: TlsMaterial): Promise<string | undefined> {
  const s = material.settings;
  const [serverSide, clientSide] = duplexPair();
  const server = new TLSSocket(serverSide, {
    isServer: true,
    secureContext: material.context,
    requestCert: false,
    rejectUnauthorized: false,
  });
  const client = connect({
    socket: clientSide,
    rejectUnauthorized: false,
    minVersion: s.ssl_min_protocol_version,
    maxVersion: s.ssl_max_protocol_version === '' ? 'TLSv1.3' : s.ssl_max_protocol_version,
    // Every suite OpenSSL knows, at any security level: the question is what the server can agree to at all.
    ciphers: 'ALL:@SECLEVEL=0',
  });
  const outcome = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 5000); // never block a start on this check
    const done = (r: string | undefined) => {
      clearTimeout(timer);
      resolve(r);
    };
    server.once('error', (e: Error) => done(/SSL routines:[^:]*:([^:]+):/.exec(e.message)?.[1] ?? e.message));
    client.once('error', () => undefined);
    client.once('secureConnect', () => done(undefined));
  });
  server.destroy();
  client.destroy();
  return outcome;
}

/** Throws PGTLS_ERR_TLS_CONFIG, naming the key type, the settings and the fix, when no handshake can succeed. */
export async function assertHandshakePossible(material: TlsMaterial): Promise<void> {
  const reason = await selfHandshake(material);
  if (reason === undefined) return;
  const s = material.settings;
  const keyType = material.key.asymmetricKeyType ?? 'unknown';
  const keyName = keyType === 'ec' ? 'ECDSA' : keyType === 'rsa' || keyType === 'rsa-pss' ? 'RSA' : keyType;
  const tls13 = s.ssl_max_protocol_version !== '' && s.ssl_max_protocol_version !== 'TLSv1.3' ? 'excluded' : 'allowed';
  const fix =
    keyName === 'ECDSA'
      ? `Use an RSA key and certificate (pgtls cert server --key-type rsa-2048), or add ECDHE-ECDSA suites to ssl_ciphers (e.g. 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:${s.ssl_ciphers}'), or allow TLSv1.3.`
      : keyName === 'RSA'
        ? `Add ECDHE-RSA suites to ssl_ciphers (e.g. 'ECDHE-RSA-AES256-GCM-SHA384:${s.ssl_ciphers}'), or allow TLSv1.3.`
        : 'Choose a cipher list that suits the key, or allow TLSv1.3.';
  throw new PgtlsError(
    ERR_TLS_CONFIG,
    `no TLS handshake can succeed with this configuration: the ${keyName} key in "${s.ssl_key_file}" cannot be used with any suite of ssl_ciphers '${s.ssl_ciphers}' (${reason}), and TLS 1.3 is ${tls13}`,
    {
      details: {
        file: s.ssl_key_file,
        setting: 'ssl_ciphers',
        key_type: keyName,
        ssl_ciphers: s.ssl_ciphers,
        ssl_min_protocol_version: s.ssl_min_protocol_version,
        ssl_max_protocol_version: s.ssl_max_protocol_version,
        hint: fix,
      },
    },
  );
}
