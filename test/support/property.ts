/**
 * Helpers for the property-based tests: run counts scaled by PGTLS_PROPERTY_SCALE (default 1, the CI size; the
 * defaults add up to more than 10^6 generated inputs across test/unit/property-*.test.ts), and the one rule every
 * parser must keep: the only exception that may escape is a PgtlsError with a PGTLS_ERR_ code.
 */
import assert from 'node:assert/strict';
import { PgtlsError } from '../../src/errors.js';

const scale = Number(process.env.PGTLS_PROPERTY_SCALE ?? '1');

/** `n` runs at CI size, scaled; never fewer than 10 so a tiny scale still exercises each property. */
export function runs(n: number): number {
  return Math.max(10, Math.round(n * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/** Run `fn`; an exception is fine only when it is a coded PgtlsError (and, if given, one of `codes`). */
export function onlyCodedErrors<T>(fn: () => T, codes?: readonly string[]): T | PgtlsError {
  try {
    return fn();
  } catch (err) {
    assert.ok(err instanceof PgtlsError, `an uncoded exception escaped: ${String((err as Error)?.stack ?? err)}`);
    assert.match(err.code, /^PGTLS_ERR_[A-Z0-9_]+$/);
    if (codes) assert.ok(codes.includes(err.code), `unexpected code ${err.code}: ${err.message}`);
    return err;
  }
}
