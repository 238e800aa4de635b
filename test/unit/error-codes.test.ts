import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const root = new URL('../../../', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every PGTLS_ERR_ code used in src/ is documented in docs/errors.md', () => {
  const used = new Set<string>();
  for (const file of sources(join(root, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/PGTLS_ERR_[A-Z0-9_]+/g)) used.add(m[0]);
  }
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const missing = [...used].filter((code) => !doc.includes(`\`${code}\``));
  assert.ok(used.size > 0, 'no error codes found: the scan is broken');
  assert.deepEqual(missing, [], `codes missing from docs/errors.md: ${missing.join(', ')}`);
});
