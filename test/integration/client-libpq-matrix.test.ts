/**
 * pgtls/client against libpq 18 (psql), side by side, on a real PostgreSQL 18 with ssl=on and many server
 * certificates: for every connection string both must reach the same outcome — connected with TLS, connected in
 * plaintext, or refused with the same message, byte for byte.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  type Pki,
  type SslCluster,
  makePki,
  pgtlsOutcome,
  psqlOutcome,
  startSslCluster,
} from '../support/client-fixtures.js';

let pki: Pki;
let srv: SslCluster;

before(async () => {
  pki = await makePki();
  srv = await startSslCluster(pki);
});
after(async () => {
  await srv?.destroy();
});

interface Case {
  readonly variant: string;
  readonly conninfo: string;
  readonly env?: Record<string, string>;
  /** The outcome we expect from both (a sanity check that the case tests what it says). */
  readonly expect?: 'tls' | 'plain' | 'refused';
}

function expand(s: string): string {
  return s
    .replace(/\{port\}/g, String(srv.port))
    .replace(/\{socket\}/g, srv.cluster.socketDir)
    .replace(/\{(\w[\w.-]*)\}/g, (_, name: string) => {
      const f = pki.files[name];
      if (!f) throw new Error(`no fixture file ${name}`);
      return f;
    });
}

const base = 'host=127.0.0.1 port={port} user=postgres dbname=postgres';
const local = 'host=localhost port={port} user=postgres dbname=postgres';

const CASES: Case[] = [
  // sslmode without a root file
  { variant: 'good', conninfo: `${base} sslmode=disable`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=allow`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=prefer`, expect: 'tls' },
  { variant: 'good', conninfo: `${base}`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-full`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert=/nonexistent/root.crt`, expect: 'refused' },
  // a root file that exists turns verification on in every mode
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'good', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require sslrootcert={other-root.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=prefer sslrootcert={other-root.crt}`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=allow sslrootcert={other-root.crt}`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={other-root.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={intermediate.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={bundle.crt}`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={garbage.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=disable sslrootcert={other-root.crt}`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={empty.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={root.der}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={certdir}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=require sslrootcert={garbage.crt}`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode=prefer sslrootcert={garbage.crt}`, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=verify-ca sslrootcert={root.crt} sslcrl={certdir}`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require sslcert={certdir} sslkey={client.key}`, expect: 'refused' },
  // host names
  {
    variant: 'good',
    conninfo:
      'host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=db.pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=db.pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-ca sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  { variant: 'cn-only', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'cn-only', conninfo: `${base} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'cn-ip', conninfo: `${base} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'wrong-host', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'wrong-host', conninfo: `${local} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'wrong-host', conninfo: `${local} sslmode=require`, expect: 'tls' },
  {
    variant: 'wildcard',
    conninfo:
      'host=db.pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'wildcard',
    conninfo:
      'host=a.b.pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'wildcard',
    conninfo:
      'host=pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'wildcard',
    conninfo:
      'host=DB.PGTLS.TEST hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  { variant: 'ip-san', conninfo: `${base} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  {
    variant: 'ip-san',
    conninfo: 'host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  { variant: 'ip-san', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  {
    variant: 'ip-san',
    conninfo:
      'host=127.1 hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  { variant: 'dns-san-and-cn', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'dns-san-and-cn', conninfo: `${base} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'multi', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  {
    variant: 'multi',
    conninfo:
      'host=10.0.0.1 hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  // IPv6: an IP SAN compared as an address, in any spelling; DNS SANs still examined
  {
    variant: 'ipv6',
    conninfo: 'host=::1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'ipv6',
    conninfo:
      'host=0:0:0:0:0:0:0:1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'ipv6',
    conninfo: 'host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'ipv6',
    conninfo:
      'host=localhost hostaddr=::1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'ipv6',
    conninfo:
      'host=db.pgtls.test hostaddr=::1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'ipv6',
    conninfo: 'postgresql://postgres@[::1]:{port}/postgres?sslmode=verify-full&sslrootcert={root.crt}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=::1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'cn-wildcard',
    conninfo:
      'host=db.pgtls.test hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  { variant: 'cn-wildcard', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'embedded-nul', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'embedded-nul', conninfo: `${local} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'tls' },
  // expired, self-signed, partial chains
  { variant: 'expired', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'expired', conninfo: `${local} sslmode=require`, expect: 'tls' },
  { variant: 'expired', conninfo: `${local} sslmode=prefer sslrootcert={root.crt}`, expect: 'plain' },
  { variant: 'self-signed', conninfo: `${local} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'self-signed', conninfo: `${local} sslmode=verify-full sslrootcert={self-signed.crt}`, expect: 'refused' },
  { variant: 'self-signed', conninfo: `${local} sslmode=require`, expect: 'tls' },
  { variant: 'leaf-only', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'leaf-only', conninfo: `${local} sslmode=verify-full sslrootcert={bundle.crt}`, expect: 'tls' },
  { variant: 'leaf-only', conninfo: `${local} sslmode=verify-full sslrootcert={intermediate.crt}`, expect: 'refused' },
  // more chains: RSA, the root sent too, not yet valid, a broken path length, a clientAuth-only certificate
  { variant: 'rsa', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'full-chain', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  { variant: 'full-chain', conninfo: `${local} sslmode=verify-full sslrootcert={other-root.crt}`, expect: 'refused' },
  { variant: 'not-yet-valid', conninfo: `${local} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'not-yet-valid', conninfo: `${local} sslmode=require`, expect: 'tls' },
  { variant: 'pathlen', conninfo: `${local} sslmode=verify-ca sslrootcert={root.crt}`, expect: 'refused' },
  { variant: 'pathlen', conninfo: `${local} sslmode=require`, expect: 'tls' },
  { variant: 'client-eku', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}` },
  { variant: 'client-eku', conninfo: `${local} sslmode=require` },
  // CRLs
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl={crl-revoked.pem}`,
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl={crl-clean.pem}`,
    expect: 'tls',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl={crl-root-only.pem}`,
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl=/nonexistent.crl`,
    expect: 'tls',
  },
  { variant: 'revoked', conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`, expect: 'tls' },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=prefer sslrootcert={root.crt} sslcrl={crl-revoked.pem}`,
    expect: 'plain',
  },
  // TLS versions
  { variant: 'good', conninfo: `${base} sslmode=require ssl_min_protocol_version=TLSv1.3`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require ssl_max_protocol_version=TLSv1.2`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require ssl_min_protocol_version=TLSv1.4`, expect: 'refused' },
  {
    variant: 'good',
    conninfo: `${base} sslmode=require ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2`,
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${base} sslmode=require ssl_max_protocol_version=TLSv1.1`, expect: 'refused' },
  {
    variant: 'good',
    conninfo: `${base} sslmode=prefer ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1.1`,
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: `${base} sslmode=require ssl_min_protocol_version=TLSv1 ssl_max_protocol_version=TLSv1`,
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${base} sslmode=require ssl_min_protocol_version=TLSv1.1`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=require ssl_min_protocol_version=`, expect: 'tls' },
  // direct negotiation and SNI
  { variant: 'good', conninfo: `${base} sslmode=require sslnegotiation=direct`, expect: 'tls' },
  {
    variant: 'good',
    conninfo: `${local} sslmode=verify-full sslnegotiation=direct sslrootcert={root.crt}`,
    expect: 'tls',
  },
  { variant: 'good', conninfo: `${base} sslmode=prefer sslnegotiation=direct`, expect: 'refused' },
  {
    variant: 'good',
    conninfo: `${base} sslmode=verify-ca sslnegotiation=direct sslrootcert={other-root.crt}`,
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${local} sslmode=verify-full sslsni=0 sslrootcert={root.crt}`, expect: 'tls' },
  // hba-driven fallbacks: prefer retries in plaintext, allow retries with TLS
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=plainonly dbname=postgres sslmode=prefer',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=plainonly dbname=postgres sslmode=require',
    expect: 'refused',
  },
  { variant: 'good', conninfo: 'host=127.0.0.1 port={port} user=sslonly dbname=postgres sslmode=allow', expect: 'tls' },
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=sslonly dbname=postgres sslmode=disable',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=nobody dbname=postgres sslmode=prefer',
    expect: 'refused',
  },
  // passwords: a refused login under TLS is retried in plaintext (the driver's exchange is completed for it)
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=pwuser password=wrong dbname=postgres',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=pwuser password=pw-secret dbname=postgres',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=bothuser password=wrong dbname=postgres',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=bothuser password=pw-secret dbname=postgres sslmode=allow',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=bothuser password=wrong dbname=postgres sslmode=allow',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=mixuser password=wrong dbname=postgres',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=mixuser password=pw-secret dbname=postgres',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=clearuser password=wrong dbname=postgres',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=clearuser password=pw-secret dbname=postgres',
    expect: 'tls',
  },
  { variant: 'good', conninfo: 'host=localhost port={port} user=postgres dbname=nosuchdb', expect: 'refused' },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=postgres dbname=nosuchdb sslmode=allow',
    expect: 'refused',
  },
  { variant: 'good', conninfo: 'host=localhost port={port} user=pwuser dbname=postgres', expect: 'refused' },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=pwuser dbname=postgres sslmode=require',
    expect: 'refused',
  },
  // client certificates
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={wrong-client.crt} sslkey={wrong-client.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={client.crt} sslkey={client-0644.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={client.crt} sslkey={client-0640.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={client.crt} sslkey=/nonexistent.key',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={client.crt} sslkey={client.key} sslcertmode=disable',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={client.crt} sslkey={wrong-client.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={stranger.crt} sslkey={stranger.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=postgres dbname=postgres sslmode=prefer sslcert={client.crt} sslkey={client-0644.key}',
    expect: 'plain',
  },
  // sslcertmode
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=postgres dbname=postgres sslmode=require sslcertmode=require',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=postgres dbname=postgres sslmode=prefer sslcertmode=require',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=postgres dbname=postgres sslmode=disable sslcertmode=require',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcertmode=require sslcert={client.crt} sslkey={client.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=postgres dbname=postgres sslmode=require sslcertmode=allow sslcert={client.crt} sslkey={client.key}',
    expect: 'tls',
  },
  // client key encodings and passwords
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client-enc.key} sslpassword=key-secret',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client-enc.key} sslpassword=wrong',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client-der.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client-sec1.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={garbage.crt}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert={garbage.crt} sslkey={client.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require sslcert=/nonexistent.crt sslkey={client.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=postgres dbname=postgres sslmode=require sslcert={client.crt} sslkey={client.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client.crt} sslkey={client-enc.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client-combined.pem} sslkey={client-combined.pem}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={root.crt} sslcert={client-combined.pem} sslkey={client.key}',
    expect: 'refused',
  },
  // CRL directories
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrldir={crldir-revoked}`,
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrldir={crldir-clean}`,
    expect: 'tls',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrldir=/nonexistent-dir`,
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl={crl-clean.pem} sslcrldir={crldir-revoked}`,
    expect: 'tls',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl=/nonexistent.crl sslcrldir={crldir-revoked}`,
    expect: 'tls',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrldir={crldir-misnamed}`,
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt} sslcrl={crl-root-only.pem} sslcrldir={crldir-clean}`,
    expect: 'tls',
  },
  // Unix-domain socket: libpq never uses TLS there, whatever sslmode says
  {
    variant: 'good',
    conninfo: 'host={socket} port={port} user=postgres dbname=postgres sslmode=require',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo: 'host={socket} port={port} user=postgres dbname=postgres sslmode=verify-full',
    expect: 'plain',
  },
  { variant: 'good', conninfo: 'host=/nonexistent port={port} user=postgres dbname=postgres', expect: 'refused' },
  // failures on both attempts: libpq reports both lines
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=sslonly dbname=postgres sslmode=prefer sslrootcert={other-root.crt}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1 port={port} user=sslonly dbname=postgres sslmode=allow sslrootcert={other-root.crt}',
    expect: 'refused',
  },
  {
    variant: 'expired',
    conninfo: 'host=localhost port={port} user=sslonly dbname=postgres sslrootcert={root.crt}',
    expect: 'refused',
  },
  // TLS 1.2: a client certificate the server does not trust fails inside the handshake
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=require ssl_max_protocol_version=TLSv1.2 sslcert={stranger.crt} sslkey={stranger.key}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=postgres dbname=postgres sslmode=prefer ssl_max_protocol_version=TLSv1.2 sslcert={stranger.crt} sslkey={stranger.key}',
    expect: 'plain',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full ssl_max_protocol_version=TLSv1.2 sslrootcert={root.crt} sslcert={client.crt} sslkey={client.key}',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost. port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=LOCALHOST port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={root.crt}',
    expect: 'tls',
  },
  // URIs and legacy spellings
  { variant: 'good', conninfo: 'postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=require', expect: 'tls' },
  { variant: 'good', conninfo: 'postgres://postgres@127.0.0.1:{port}/postgres?ssl=true', expect: 'tls' },
  {
    variant: 'good',
    conninfo: 'postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={root.crt}',
    expect: 'tls',
  },
  { variant: 'good', conninfo: 'postgresql://postgres@[::1]:{port}/postgres?sslmode=disable', expect: 'plain' },
  { variant: 'good', conninfo: `${base} requiressl=1`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} sslmode=verify-full requiressl=1`, expect: 'tls' },
  { variant: 'good', conninfo: `${base} requiressl=0 sslmode=disable`, expect: 'plain' },
  // several hosts
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1,127.0.0.1 port=1,{port} user=postgres dbname=postgres sslmode=require',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=nonexistent.invalid,127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=127.0.0.1,localhost port={port} user=plainonly dbname=postgres sslmode=require',
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${base} sslmode=require target_session_attrs=any`, expect: 'tls' },
  // target_session_attrs, decided from the ParameterStatus the server reports (PostgreSQL 14+)
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=rouser password=pw-secret target_session_attrs=read-write',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=rouser password=pw-secret target_session_attrs=read-only',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=postgres target_session_attrs=read-only',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=postgres target_session_attrs=read-write',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=postgres target_session_attrs=primary',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=postgres target_session_attrs=standby',
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo:
      'host=127.0.0.1,localhost port={port} dbname=postgres sslmode=require user=postgres target_session_attrs=prefer-standby',
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo:
      'host=localhost port={port} dbname=postgres user=rouser password=pw-secret target_session_attrs=read-write',
    expect: 'refused',
  },
  // environment variables
  { variant: 'good', conninfo: `${base}`, env: { PGSSLMODE: 'disable' }, expect: 'plain' },
  { variant: 'good', conninfo: `${base}`, env: { PGREQUIRESSL: '1', PGSSLMODE: 'allow' }, expect: 'plain' },
  { variant: 'good', conninfo: `${base} sslmode=prefer`, env: { PGSSLMODE: 'disable' }, expect: 'tls' },
  { variant: 'good', conninfo: `${local}`, env: { PGSSLMODE: 'verify-full' }, expect: 'refused' },
  {
    variant: 'good',
    conninfo: 'dbname=postgres user=postgres',
    env: { PGHOST: 'localhost', PGPORT: '{port}', PGSSLROOTCERT: '{root.crt}', PGSSLMODE: 'verify-full' },
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: `${base} sslmode=require`,
    env: { PGSSLMINPROTOCOLVERSION: 'TLSv1.3', PGSSLMAXPROTOCOLVERSION: 'TLSv1.2' },
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${base} sslmode=require`, env: { PGSSLNEGOTIATION: 'direct' }, expect: 'tls' },
  { variant: 'good', conninfo: `${base}`, env: { PGSSLNEGOTIATION: 'direct' }, expect: 'refused' },
  {
    variant: 'good',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`,
    env: { PGSSLSNI: '0' },
    expect: 'tls',
  },
  { variant: 'good', conninfo: `${local}`, env: { PGSSLMODE: 'bogus' }, expect: 'refused' },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=certuser dbname=postgres sslmode=require',
    env: { PGSSLCERT: '{client.crt}', PGSSLKEY: '{client.key}' },
    expect: 'tls',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`,
    env: { PGSSLCRL: '{crl-revoked.pem}' },
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${local} sslrootcert=system`, env: { SSL_CERT_FILE: '{root.crt}' }, expect: 'tls' },
  {
    variant: 'good',
    conninfo: `${local} sslrootcert=system`,
    env: { SSL_CERT_FILE: '/nonexistent.pem', SSL_CERT_DIR: '{certdir}' },
    expect: 'tls',
  },

  {
    variant: 'good',
    conninfo: `${base} sslrootcert=system`,
    env: { SSL_CERT_FILE: '{other-root.crt}' },
    expect: 'refused',
  },
  { variant: 'good', conninfo: `${local} sslrootcert=system sslmode=require`, expect: 'refused' },
  // passwords from ~/.pgpass (PGPASSFILE / passfile) and service files
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=pwuser dbname=postgres sslmode=require',
    env: { PGPASSFILE: '{pgpass}' },
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=pwuser dbname=postgres sslmode=require passfile={pgpass}',
    expect: 'tls',
  },
  { variant: 'good', conninfo: 'service=verified port={port}', env: { PGSERVICEFILE: '{services}' }, expect: 'tls' },
  {
    variant: 'good',
    conninfo: 'port={port}',
    env: { PGSERVICEFILE: '{services}', PGSERVICE: 'verified' },
    expect: 'tls',
  },
  { variant: 'good', conninfo: 'service=weak port={port}', env: { PGSERVICEFILE: '{services}' }, expect: 'refused' },
  {
    variant: 'good',
    conninfo: 'service=weak port={port} sslrootcert={root.crt}',
    env: { PGSERVICEFILE: '{services}' },
    expect: 'tls',
  },
  { variant: 'good', conninfo: 'service=missing port={port}', env: { PGSERVICEFILE: '{services}' }, expect: 'refused' },
  // the remaining PG* variables (and: a service file beats the environment)
  {
    variant: 'good',
    conninfo: 'host=localhost port={port}',
    env: { PGUSER: 'pwuser', PGPASSWORD: 'pw-secret', PGDATABASE: 'postgres', PGSSLMODE: 'require' },
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port}',
    env: { PGUSER: 'pwuser', PGPASSWORD: 'wrong', PGDATABASE: 'postgres' },
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'host=localhost port={port} user=postgres dbname=postgres sslmode=require',
    env: { PGSSLCERTMODE: 'require' },
    expect: 'refused',
  },
  {
    variant: 'revoked',
    conninfo: `${local} sslmode=verify-full sslrootcert={root.crt}`,
    env: { PGSSLCRLDIR: '{crldir-revoked}' },
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'dbname=postgres user=postgres',
    env: {
      PGHOST: '127.0.0.1',
      PGHOSTADDR: '127.0.0.1',
      PGPORT: '{port}',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '{root.crt}',
    },
    expect: 'tls',
  },
  {
    variant: 'good',
    conninfo: 'dbname=postgres user=postgres sslmode=require',
    env: { PGHOST: '127.0.0.1', PGPORT: '{port}', PGCONNECT_TIMEOUT: 'abc' },
    expect: 'refused',
  },
  {
    variant: 'good',
    conninfo: 'dbname=postgres user=postgres',
    env: { PGSERVICE: 'weak', PGSERVICEFILE: '{services}', PGPORT: '{port}', PGSSLROOTCERT: '{root.crt}' },
    expect: 'refused',
  },
  // option errors (no connection at all)
  { variant: 'good', conninfo: `${base} sslmode=bogus`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslnegotiation=bogus`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslcertmode=bogus`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} bogus=1`, expect: 'refused' },
  { variant: 'good', conninfo: `${base} sslmode='unterminated`, expect: 'refused' },
  { variant: 'good', conninfo: 'postgresql://127.0.0.1:{port}/postgres?bogus=1', expect: 'refused' },
  { variant: 'good', conninfo: 'postgresql://127.0.0.1:{port}/postgres?ssl=false', expect: 'refused' },
  { variant: 'good', conninfo: 'postgresql://[::1:{port}/postgres', expect: 'refused' },
  { variant: 'good', conninfo: 'host=127.0.0.1 port=99999 user=postgres', expect: 'refused' },
  { variant: 'good', conninfo: 'host=127.0.0.1 port=1 user=postgres sslmode=require', expect: 'refused' },
];

const label0 = (variant: string, c: Case) => `[${variant}] ${c.conninfo}`;

test('pgtls/client reaches the same outcome as libpq 18 (psql) for every connection string', async () => {
  const mismatches: string[] = [];
  const unexpected: string[] = [];
  const order = [...new Set(CASES.map((c) => c.variant))];
  let n = 0;
  for (const variant of order) {
    await srv.use(variant);
    for (const c of CASES.filter((x) => x.variant === variant)) {
      n++;
      const conninfo = expand(c.conninfo);
      const env = Object.fromEntries(Object.entries(c.env ?? {}).map(([k, v]) => [k, expand(v)]));
      if (process.env.PGTLS_MATRIX_TRACE) console.log('case', label0(variant, c));
      const libpq = await psqlOutcome(conninfo, env);
      const ours = await pgtlsOutcome(conninfo, env);
      const label = `[${variant}] ${c.conninfo}${c.env ? ` env=${JSON.stringify(c.env)}` : ''}`;
      if (JSON.stringify(libpq) !== JSON.stringify(ours)) {
        mismatches.push(`${label}\n  libpq:  ${JSON.stringify(libpq)}\n  pgtls:  ${JSON.stringify(ours)}`);
      }
      const kind = libpq.result === 'refused' ? 'refused' : libpq.tls ? 'tls' : 'plain';
      if (c.expect && c.expect !== kind)
        unexpected.push(`${label}: expected ${c.expect}, libpq gave ${JSON.stringify(libpq)}`);
    }
  }
  const report = `${n} cases, ${mismatches.length} differ from libpq\n${mismatches.join('\n')}`;
  if (process.env.PGTLS_MATRIX_REPORT) console.log(report);
  assert.deepEqual(unexpected, [], `cases whose libpq outcome is not what the case claims:\n${unexpected.join('\n')}`);
  assert.equal(mismatches.length, 0, report);
});
