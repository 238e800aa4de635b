/**
 * The few calls the connection phases make into the operator modules, in one place so each phase makes one call:
 * metrics, the report-only recorder and the backend view writer stay consistent (a would-be refusal is counted and
 * listed together; a relayed session's row is written and removed together with the active-sessions gauge).
 */
import type { GatewayMetrics } from '../metrics.js';
import type { ReportPolicy, ReportReason, WouldRefuseRecorder } from '../report-policy.js';
import type { ConnectionRecord } from '../runtime.js';
import { type SslViewWriter, sessionSslFacts } from '../ssl-view.js';
import type { TlsFacts } from '../transport.js';

export interface OperatorHooksOptions {
  readonly metrics: GatewayMetrics;
  readonly recorder: WouldRefuseRecorder;
  /** The report-only policy in force (it changes on reload). */
  readonly policy: () => ReportPolicy;
  /** Present when client_tls_facts_to_backend is `view` or `both`. */
  readonly sslView?: SslViewWriter;
}

export class OperatorHooks {
  /** Records of the sessions counted as active (sessionRelayed), so each is uncounted once. */
  readonly #counted = new WeakSet<ConnectionRecord>();

  constructor(private readonly o: OperatorHooksOptions) {}

  /** negotiate phase: the server handshake finished (ok) or failed. */
  handshake(durationSeconds: number, ok: boolean): void {
    this.o.metrics.handshake(durationSeconds, ok ? 'ok' : 'failed');
  }

  /**
   * attach phase: the backend accepted the session (after BackendKeyData). Counts the active session, evaluates the
   * report-only policy (returns its reasons, for the connection's log line) and queues the view's row.
   */
  sessionRelayed(
    record: ConnectionRecord,
    facts: TlsFacts | undefined,
    backendPid: number | undefined,
  ): ReportReason[] {
    this.o.metrics.sessionStarted();
    this.#counted.add(record);
    const reasons = this.o.recorder.consider(this.o.policy(), record);
    this.o.metrics.wouldRefuse(reasons);
    if (this.o.sslView && backendPid !== undefined)
      this.o.sslView.sessionStarted(backendPid, sessionSslFacts(facts, record));
    return reasons;
  }

  /**
   * closing phase of a relayed session (once, after the relay ended). Only a session sessionRelayed counted is
   * uncounted: console and pooled sessions end with outcome 'relayed' too, and must not drive the gauge negative.
   */
  sessionEnded(record: ConnectionRecord, backendPid: number | undefined): void {
    if (this.#counted.delete(record)) this.o.metrics.sessionEnded();
    if (this.o.sslView && backendPid !== undefined) this.o.sslView.sessionEnded(backendPid);
  }

  /** Every connection, whatever its outcome, with its final record (where emitConnection logs it). */
  connectionEnded(record: ConnectionRecord): void {
    this.o.metrics.observe(record);
  }

  reload(ok: boolean): void {
    this.o.metrics.reload(ok);
  }
}
