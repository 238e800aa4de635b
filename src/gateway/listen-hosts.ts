import { lookup } from 'node:dns/promises';

/**
 * listen_addresses as PostgreSQL reads it (and metrics_listen_addresses the same way): comma-separated host names
 * or IPs, '*' for every IPv4 and IPv6 address, 'localhost' resolved to each of its addresses.
 */
export async function listenHosts(value: string): Promise<string[]> {
  const out: string[] = [];
  for (const item of value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (item === '*') out.push('0.0.0.0', '::');
    else if (item === 'localhost') {
      const addrs = await lookup('localhost', { all: true }).catch(() => [{ address: '127.0.0.1' }]);
      out.push(...addrs.map((a) => a.address));
    } else out.push(item);
  }
  return [...new Set(out)];
}
