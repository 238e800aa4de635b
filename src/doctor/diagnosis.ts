/** A diagnosis: one cause and one fix, as doctor reports them (shared by the explain-* modules). */
import type { Stage } from './doctor.js';

export interface Diagnosis {
  /** Stable name of the cause, for scripts and tests (e.g. `tls-version-mismatch`). */
  readonly code: string;
  readonly stage: Stage;
  /** One sentence: what is wrong. */
  readonly cause: string;
  /** One sentence: what to do. */
  readonly fix: string;
  /** Supporting facts (names in the certificate, versions the server accepts, …). */
  readonly evidence?: readonly string[];
}

/** Build a diagnosis; evidence is kept only when there is some. */
export const d = (code: string, stage: Stage, cause: string, fix: string, evidence?: string[]): Diagnosis => ({
  code,
  stage,
  cause,
  fix,
  ...(evidence?.length ? { evidence } : {}),
});
