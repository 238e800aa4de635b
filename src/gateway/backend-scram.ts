/**
 * The gateway as a SCRAM client of its backend, for both ways it logs in (the relay's backend-login.ts and the
 * pool's pool/login.ts): the mechanism libpq would pick with channel_binding=prefer on this hop — SCRAM-SHA-256-PLUS
 * with tls-server-end-point of the backend's certificate when the hop is TLS and the backend offers it, else
 * SCRAM-SHA-256 (gs2 flag y over TLS, n otherwise) — so a TLS hop to the backend is bound to the certificate the
 * gateway verified, as libpq's own connection would be.
 */
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { ScramClient, type ScramClientOptions, selectScramMechanism } from '../protocol/scram-client.js';
import { tlsServerEndPoint } from '../protocol/scram.js';

export type BackendScramSecret = Pick<ScramClientOptions, 'password' | 'keys' | 'expect'>;

export function backendScram(
  offered: readonly string[],
  socket: Duplex,
  secret: BackendScramSecret,
): { scram: ScramClient; plus: boolean } | { error: string } {
  // A native TLS hop (../tls/native-upstream.ts) carries the server certificate it verified as a property.
  const native = (socket as { upstreamPeerCertificate?: Buffer }).upstreamPeerCertificate;
  const tls = socket instanceof TLSSocket || native !== undefined;
  const choice = selectScramMechanism([...offered], { tls, channelBinding: 'prefer' });
  if ('error' in choice) return choice;
  const raw = socket instanceof TLSSocket ? socket.getPeerCertificate()?.raw : native;
  const scram = new ScramClient({
    ...choice,
    ...secret,
    ...(raw ? { channelBinding: tlsServerEndPoint(raw) } : {}),
  });
  return { scram, plus: choice.flag === 'p' };
}
