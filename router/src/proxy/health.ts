/**
 * Passive health of upstream origins (outlier ejection), shared by both forwarding
 * clients (h1.ts and undici's in index.ts): it picks which origin of a tenant a
 * request tries next, and learns from how each try went. Semantics follow Envoy's
 * outlier detection (`consecutive_5xx`, `base_ejection_time`, `max_ejection_time`):
 *
 * - an origin is ejected after `consecutiveFailures` failures in a row — a connect
 *   error or timeout, a headers timeout, a connection that failed before a response,
 *   or a 5xx response; any other response resets the count;
 * - an ejected origin is skipped when picking, for `baseEjectionMs` × the number of
 *   times it was ejected in a row, at most `maxEjectionMs`; the multiplier is
 *   forgotten once the origin has stayed in for `maxEjectionMs`;
 * - when its ejection ends it is on probation: one request at a time is let through as
 *   a probe (others skip it, for at most `probeWindowMs`, the longest a try can take
 *   before it has an outcome); a response below 500 re-admits it, a failure ejects it
 *   again, for longer. Envoy re-admits outright; a probe instead means an origin
 *   that is still black-holed costs one request per ejection period, not every
 *   request picked in the connect timeout after re-admission.
 *
 * When every origin of a tenant is ejected, the request is not refused blindly: it goes
 * to the one whose ejection ends soonest (Envoy's panic mode; counted), one try and no
 * retry. Refusing at once would turn ejection into an outage of its own: a tenant with
 * one instance (the usual case) whose app answers a few 500s in a row, or whose
 * instances all hiccupped together, would get nothing but 502s for the whole ejection
 * time even though the app is serving; with panic mode ejection never makes a tenant
 * worse off than no ejection, and a dead tenant costs what it cost before (one
 * refused connect, or at most the connect timeout). Envoy's `max_ejection_percent` is
 * not implemented: health is per origin URL, shared by every tenant listing it, so a
 * percentage of "the cluster" has no single meaning here; panic mode covers the
 * all-ejected case it guards against.
 *
 * Health is per router process (each worker learns on its own, as Envoy's do per
 * host). Only origins that failed are tracked, so healthy traffic costs one size check
 * or Map lookup per pick and per outcome, and no allocation. The table is bounded:
 * entries quiet for `maxEjectionMs` are dropped, and at `maxTracked` entries the oldest
 * go first.
 */

/** Why an exchange counted against its origin. */
export type FailureKind = "connect_error" | "timeout" | "reset" | "protocol" | "status_5xx";

export interface HealthOptions {
  /** Failures in a row that eject an origin; 0 turns ejection off. */
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  /** How long a probe of a re-admitted origin may take before another is let through. */
  probeWindowMs: number;
  /** Origins tracked at most. */
  maxTracked?: number;
  /** Milliseconds, monotonic. */
  now?: () => number;
  onEject?: (kind: FailureKind) => void;
  /** Every failure reported (ejecting or not). */
  onFailure?: (kind: FailureKind) => void;
  /** A request went to an ejected origin because every origin of its tenant was ejected. */
  onPanic?: () => void;
}

class OriginState {
  /** Failures in a row. */
  failures = 0;
  /** Not picked before this time (ejected, or a probe in flight); 0: admitted. */
  until = 0;
  /** Ejection over, waiting for a probe to succeed. */
  probing = false;
  /** Ejections in a row (the back-off multiplier). */
  ejections = 0;
  /** When the last ejection ended or was due to end. */
  lastEnd = 0;
  lastFailure = 0;
}

export class UpstreamHealth {
  readonly #threshold: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #probeMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  readonly #onEject: (kind: FailureKind) => void;
  readonly #onFailure: (kind: FailureKind) => void;
  readonly #onPanic: () => void;
  readonly #states = new Map<string, OriginState>();

  constructor(o: HealthOptions) {
    this.#threshold = o.consecutiveFailures;
    this.#baseMs = o.baseEjectionMs;
    this.#maxMs = Math.max(o.maxEjectionMs, o.baseEjectionMs);
    this.#probeMs = o.probeWindowMs;
    this.#maxTracked = o.maxTracked ?? 4_096;
    this.#now = o.now ?? (() => performance.now());
    this.#onEject = o.onEject ?? (() => {});
    this.#onFailure = o.onFailure ?? (() => {});
    this.#onPanic = o.onPanic ?? (() => {});
  }

  /**
   * The position (0 ≤ p < n, origin `origins[(start + p) % n]`) of the next origin to
   * try, at or after position `from`; -1 when none is left. Positions only move
   * forward, so a request tries each origin at most once. On the first try (`from`
   * 0) with every origin ejected, the one whose ejection ends soonest (panic).
   */
  pick(origins: readonly string[], start: number, from: number): number {
    const n = origins.length;
    if (from >= n) return -1;
    if (this.#states.size === 0) return from;
    let now = 0;
    for (let p = from; p < n; p++) {
      const s = this.#states.get(origins[(start + p) % n] as string);
      if (s === undefined || s.until === 0) return p;
      if (now === 0) now = this.#now();
      if (now < s.until) continue;
      // Its ejection (or its last probe's window) is over: this request is the probe.
      s.probing = true;
      s.until = now + this.#probeMs;
      return p;
    }
    if (from !== 0) return -1;
    let best = 0;
    let soonest = Number.POSITIVE_INFINITY;
    for (let p = 0; p < n; p++) {
      const until = (this.#states.get(origins[(start + p) % n] as string) as OriginState).until;
      if (until < soonest) {
        soonest = until;
        best = p;
      }
    }
    this.#onPanic();
    return best;
  }

  /** A response with this status came from `origin`. */
  status(origin: string, status: number): void {
    if (status >= 500) this.failure(origin, "status_5xx");
    else this.success(origin);
  }

  success(origin: string): void {
    if (this.#states.size === 0) return;
    const s = this.#states.get(origin);
    if (s === undefined) return;
    s.failures = 0;
    // A success while ejected (a panic request, or one sent before the ejection) does
    // not cut the ejection short, as in Envoy; a probe's success ends probation.
    if (s.probing) {
      s.probing = false;
      s.until = 0;
    }
  }

  failure(origin: string, kind: FailureKind): void {
    this.#onFailure(kind);
    if (this.#threshold === 0) return;
    const now = this.#now();
    let s = this.#states.get(origin);
    if (s === undefined) {
      if (this.#states.size >= this.#maxTracked) this.#trim(now);
      s = new OriginState();
      this.#states.set(origin, s);
    }
    s.lastFailure = now;
    // Already out (a panic request, or one sent before the ejection): nothing to add.
    if (s.until !== 0 && !s.probing) return;
    s.failures++;
    if (s.probing || s.failures >= this.#threshold) this.#eject(s, now, kind);
  }

  #eject(s: OriginState, now: number, kind: FailureKind): void {
    // In long enough since its last ejection: the back-off starts over.
    if (!s.probing && now - s.lastEnd >= this.#maxMs) s.ejections = 0;
    s.ejections++;
    s.until = now + Math.min(this.#baseMs * s.ejections, this.#maxMs);
    s.lastEnd = s.until;
    s.probing = false;
    s.failures = 0;
    this.#onEject(kind);
  }

  /** Origins currently out of rotation (ejected or on probation); also drops stale entries. */
  ejected(): number {
    const now = this.#now();
    this.#sweep(now);
    let n = 0;
    for (const s of this.#states.values()) if (s.until !== 0 || s.probing) n++;
    return n;
  }

  /** Whether `origin` is out of rotation now (for tests and diagnostics). */
  isEjected(origin: string): boolean {
    const s = this.#states.get(origin);
    return s !== undefined && s.until !== 0 && this.#now() < s.until;
  }

  get tracked(): number {
    return this.#states.size;
  }

  /** Drops entries with nothing left to remember: quiet for `maxEjectionMs` past their last failure or ejection. */
  #sweep(now: number): void {
    for (const [origin, s] of this.#states)
      if (now >= Math.max(s.lastFailure, s.until) + this.#maxMs) this.#states.delete(origin);
  }

  #trim(now: number): void {
    this.#sweep(now);
    // Still full: the oldest entries (insertion order) go; an origin forgotten this
    // way starts over as healthy, which is the failure mode to prefer.
    for (const origin of this.#states.keys()) {
      if (this.#states.size < this.#maxTracked) break;
      this.#states.delete(origin);
    }
  }
}
