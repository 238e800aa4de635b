/**
 * `watch_files = on`: reload when a certificate, key, CA, CRL, pg_hba.conf, pg_ident.conf or the config file changes,
 * without a signal. Directories are watched rather than files, because cert-manager and Kubernetes secret mounts
 * replace files by an atomic rename (or by swapping a `..data` symlink), which a watch on the old file never sees.
 * Changes are debounced, and a reload happens only when the content of a watched file really changed (a digest of
 * each), so touching a directory does not reload. The reload itself is the all-or-nothing SIGHUP reload.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, readdirSync, statSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';

/** What the files hold now: path → digest ('' when unreadable). A directory's digest covers its entries. */
export function digestFiles(paths: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of paths) {
    try {
      const st = statSync(p);
      const h = createHash('sha256');
      if (st.isDirectory()) {
        for (const name of readdirSync(p).sort()) {
          h.update(name);
          try {
            h.update(readFileSync(join(p, name)));
          } catch {
            // an entry that vanished or is a directory: its name is enough
          }
        }
      } else h.update(readFileSync(p));
      out.set(p, h.digest('hex'));
    } catch {
      out.set(p, '');
    }
  }
  return out;
}

export interface FileWatch {
  /** Replace the set of files (after a reload changed the settings). */
  update(paths: readonly string[]): void;
  close(): void;
}

/**
 * Watch `paths`; call `onChange(changed)` once the changes settle for `debounceMs`, with the files whose content
 * differs from what was seen at the last call.
 */
export function watchFiles(
  paths: readonly string[],
  onChange: (changed: string[]) => void,
  debounceMs = 500,
): FileWatch {
  let files = [...new Set(paths.filter(Boolean))];
  let seen = digestFiles(files);
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    timer = undefined;
    const now = digestFiles(files);
    const changed = files.filter((f) => now.get(f) !== seen.get(f));
    seen = now;
    if (changed.length > 0) onChange(changed);
  };
  const poke = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
    timer.unref();
  };
  const arm = () => {
    for (const w of watchers) w.close();
    // A file's directory (where renames happen), and a directory itself (ssl_crl_dir).
    const dirs = new Set<string>();
    for (const f of files) {
      dirs.add(dirname(f));
      try {
        if (statSync(f).isDirectory()) dirs.add(f);
      } catch {
        // not there (yet): its directory is watched
      }
    }
    watchers = [];
    for (const d of dirs) {
      try {
        const w = watch(d, { persistent: false }, poke);
        w.on('error', () => undefined);
        watchers.push(w);
      } catch {
        // a directory that does not exist cannot be watched; the next reload re-arms
      }
    }
  };
  arm();
  return {
    update(next) {
      files = [...new Set(next.filter(Boolean))];
      seen = digestFiles(files);
      arm();
    },
    close() {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
      watchers = [];
    },
  };
}
