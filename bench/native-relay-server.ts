/**
 * A relay on the transport seam for bench/native-relay.ts: SSLRequest → 'S' → accept → StartupMessage through
 * session.stream → backend → splice (native) or JavaScript pipes (node). The same code for both transports
 * (test/support/native-harness.ts), so the difference measured is the transport and its relay, nothing else.
 *
 *   node dist/bench/native-relay-server.js PORT CERT KEY UPSTREAM native|node
 */
import { loadConfig } from '../src/config/load.js';
import { loadTlsMaterial } from '../src/tls/context.js';
import { loadNativeTransport, nativeUnavailableReason } from '../src/tls/native.js';
import { nodeTransport, startRelay } from '../test/support/native-harness.js';

const [port, cert, key, upstream, which] = process.argv.slice(2) as [string, string, string, string, string];
const material = loadTlsMaterial({ ...loadConfig({ env: {} }), ssl_cert_file: cert, ssl_key_file: key });
const transport = which === 'native' ? loadNativeTransport() : nodeTransport;
if (!transport) throw new Error(`native transport unavailable: ${nativeUnavailableReason()}`);
const backend = upstream.startsWith('/')
  ? { path: upstream }
  : { host: upstream.split(':')[0]!, port: Number(upstream.split(':')[1]) };
startRelay(transport, () => material, backend, { port: Number(port) }).then(
  () => process.stderr.write(`relay (${transport.name}) on ${port}\n`),
  (err: Error) => {
    process.stderr.write(`relay: ${err.message}\n`);
    process.exit(1);
  },
);
