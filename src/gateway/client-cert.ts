/** What the gateway reads from a client certificate: the names PostgreSQL matches on, and the verification result. */
import type { X509Certificate } from 'node:crypto';

/**
 * The certificate's CN and its subject DN in RFC 2253 form, as PostgreSQL's clientname=CN / clientname=DN see them.
 * Node prints the subject one attribute per line in certificate order; PostgreSQL's DN is X509_NAME_print_ex with
 * XN_FLAG_RFC2253: most specific first, comma-separated, specials escaped.
 */
export function peerSubjects(cert: X509Certificate): { cn: string; dn: string } {
  const parts = cert.subject.split('\n').filter(Boolean);
  const esc = (v: string) =>
    v
      .replace(/([,+"\\<>;])/g, '\\$1')
      .replace(/^([ #])/, '\\$1')
      .replace(/ $/, '\\ ');
  const dn = parts
    .map((p) => {
      const eq = p.indexOf('=');
      return `${p.slice(0, eq)}=${esc(p.slice(eq + 1))}`;
    })
    .reverse()
    .join(',');
  const cnPart = parts.filter((p) => p.startsWith('CN=')).pop();
  return { cn: cnPart ? cnPart.slice(3) : '', dn };
}

/** The issuer DN in the same RFC 2253 order. */
export function issuerDn(cert: X509Certificate): string {
  return cert.issuer.split('\n').filter(Boolean).reverse().join(',');
}
