/** Running `pgtls doctor` and psql side by side on the same connection string, for the doctor tests. */
import assert from 'node:assert/strict';
import { psql } from './clients.js';
import { doctorEnv, pgtlsJson } from './doctor-servers.js';

export interface DoctorJson {
  ok: boolean;
  verified: boolean;
  steps: { stage: string; status: string; summary: string }[];
  diagnosis?: { code: string; stage: string; cause: string; fix: string; evidence?: string[] };
  libpqMessage?: string;
  warnings: string[];
  connection?: { encryption: string; protocol?: string };
}

/**
 * Run doctor with --json and psql (libpq 18) with the same connection string and environment; assert they agree on
 * success, and that doctor's exit code is 0 exactly when it says the connection works.
 */
export async function diagnose(
  conninfo: string,
  extraEnv: Record<string, string> = {},
  opts: { skipPsql?: boolean } = {},
): Promise<DoctorJson> {
  const env = doctorEnv(extraEnv);
  const { code, json } = await pgtlsJson<DoctorJson>(['doctor', conninfo], env);
  assert.equal(code, json.ok ? 0 : 1, `exit code ${code} but ok=${json.ok}`);
  if (!opts.skipPsql) {
    const r = await psql(conninfo, 'select 1', { libpq: 18, env: { ...extraEnv, HOME: env.HOME! } });
    assert.equal(json.ok, r.code === 0, `doctor says ok=${json.ok}, psql exited ${r.code}: ${r.stderr}`);
    if (!json.ok && json.libpqMessage) {
      // The first line of libpq's message is what psql prints after "psql: error: ".
      const first = json.libpqMessage.split('\n')[0]!;
      assert.ok(
        r.stderr.includes(first.slice(0, 60)),
        `libpq message differs:\n doctor: ${first}\n psql:   ${r.stderr}`,
      );
    }
  }
  return json;
}

/** Assert a failed diagnosis with this code, at this stage. */
export function assertCause(j: DoctorJson, code: string, stage?: string): void {
  assert.equal(j.ok, false, 'expected a failure');
  assert.equal(j.diagnosis?.code, code, `diagnosis: ${JSON.stringify(j.diagnosis)}`);
  if (stage) assert.equal(j.diagnosis?.stage, stage);
  const failed = j.steps.filter((s) => s.status === 'fail');
  assert.equal(failed.length, 1, `exactly one failing step: ${JSON.stringify(j.steps)}`);
}
