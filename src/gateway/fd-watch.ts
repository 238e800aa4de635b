/**
 * Watches the gateway's open file descriptors against its open-files limit. When every descriptor is in use, libuv
 * accepts and immediately closes new connections (its EMFILE "trick") without telling Node, so a gateway at the limit
 * would drop clients silently. Linux shows both numbers in /proc/self; the watch reads them once a second and says
 * when the gateway reaches the limit and when it recovers. Elsewhere it does nothing.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** Open-files soft limit of this process, or undefined when /proc is not there. */
export function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Descriptors open now; at the limit even reading /proc/self/fd fails (EMFILE), which says the same thing. */
export function openFiles(limit = Number.POSITIVE_INFINITY): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? limit : undefined;
  }
}

/** Descriptors kept in reserve: at this distance from the limit new connections are about to be dropped. */
const MARGIN = 8;

export interface FdEvent {
  readonly atLimit: boolean;
  readonly open: number;
  readonly limit: number;
}

/** Calls `onChange` when the gateway reaches its limit and when it is back below it. Returns the stop function. */
export function watchFileDescriptors(onChange: (e: FdEvent) => void, intervalMs = 1000): () => void {
  const limit = openFilesLimit();
  if (limit === undefined || openFiles() === undefined) return () => undefined;
  let atLimit = false;
  const t = setInterval(() => {
    const open = openFiles(limit) ?? 0;
    const now = open >= limit - MARGIN;
    if (now !== atLimit) {
      atLimit = now;
      onChange({ atLimit, open, limit });
    }
  }, intervalMs);
  t.unref();
  return () => clearInterval(t);
}
