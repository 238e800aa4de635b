import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UNSUPPORTED_OPTIONS, settingsFromOptions, splitOptions } from '../../src/protocol/startup-options.js';

test('options split as pg_split_opts: whitespace separates, a backslash takes the next character', () => {
  assert.deepEqual(splitOptions('  -c a=1\t-c  b=x\\ y  '), ['-c', 'a=1', '-c', 'b=x y']);
  assert.deepEqual(splitOptions('-c DateStyle=ISO,\\ MDY'), ['-c', 'DateStyle=ISO, MDY']);
  assert.deepEqual(splitOptions('a\\\\b'), ['a\\b']);
  assert.deepEqual(splitOptions(''), []);
});

test('settings: -c name=value, -cname=value and --name=value (dashes in the name are underscores)', () => {
  assert.deepEqual(settingsFromOptions('-c search_path=app -cstatement_timeout=5s --work-mem=64kB'), {
    settings: [
      ['search_path', 'app'],
      ['statement_timeout', '5s'],
      ['work_mem', '64kB'],
    ],
  });
});

test("anything else is refused with PgBouncer's text", () => {
  for (const bad of ['-d 5', '-c', '-c timezone', '-B 100', 'search_path=x', '-c =x']) {
    assert.deepEqual(settingsFromOptions(bad), { error: UNSUPPORTED_OPTIONS }, bad);
  }
});
