/**
 * A circuit breaker per dependency (Redis, the key service, Postgres): closed while
 * calls succeed; open after `failureThreshold` consecutive failures or timeouts, when
 * every call fails at once with `BreakerOpenError` instead of waiting on a dependency
 * that is not answering; half-open once `openMs` has passed, when one trial (a call,
 * or the breaker's own `probe`) decides: success closes it, failure opens it again.
 *
 * With a `probe`, the breaker tries the dependency itself every `openMs` while open
 * and that probe is the only trial, so recovery is noticed within `openMs` (plus the
 * probe's own time) of the dependency coming back whether or not traffic asks for
 * it, and no request ever waits on a trial. Calls are not queued
 * and never retried here: the caller decides what a fast failure means (the stale
 * entry, the key service, a local limit, a queue flushed later, or a 503).
 */

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  /** The dependency's name, for metrics and logs ("redis", "key_service", "postgres"). */
  name: string;
  /** Consecutive failures that open the breaker (default 3). */
  failureThreshold?: number;
  /** How long it stays open before a trial (default 1,000 ms). */
  openMs?: number;
  /** A call taking longer counts as a failure and is answered as one (default: none). */
  timeoutMs?: number;
  /** Tries the dependency while open; resolves true when it answered. */
  probe?: () => Promise<boolean>;
  /** Errors that say nothing about the dependency's health (a script error, a 4xx). */
  isFailure?: (error: unknown) => boolean;
  onStateChange?: (state: BreakerState, name: string) => void;
  now?: () => number;
}

/** The dependency is known to be down: failed without calling it. */
export class BreakerOpenError extends Error {
  override name = "BreakerOpenError";
  readonly code = "breaker_open";
  constructor(dependency: string) {
    super(`${dependency} is unavailable (circuit open)`);
    // An expected outcome on the hot path while a dependency is down: no stack.
    this.stack = "";
  }
}

/** A call that outlived the breaker's `timeoutMs`. */
export class BreakerTimeoutError extends Error {
  override name = "BreakerTimeoutError";
  readonly code = "breaker_timeout";
  constructor(dependency: string, ms: number) {
    super(`${dependency} did not answer within ${ms} ms`);
    this.stack = "";
  }
}

export class CircuitBreaker {
  readonly name: string;
  readonly #threshold: number;
  readonly #openMs: number;
  readonly #timeoutMs: number;
  readonly #probe: (() => Promise<boolean>) | null;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #listeners: ((state: BreakerState, name: string) => void)[] = [];
  readonly #now: () => number;
  #state: BreakerState = "closed";
  #failures = 0;
  #openUntil = 0;
  #trial = false;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  /** Times the breaker opened (for metrics and tests). */
  opened = 0;

  constructor(options: BreakerOptions) {
    this.name = options.name;
    this.#threshold = Math.max(1, options.failureThreshold ?? 3);
    this.#openMs = Math.max(1, options.openMs ?? 1_000);
    this.#timeoutMs = options.timeoutMs ?? 0;
    this.#probe = options.probe ?? null;
    this.#isFailure = options.isFailure ?? (() => true);
    if (options.onStateChange) this.#listeners.push(options.onStateChange);
    this.#now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Also tell `listener` of every change of state (metrics, logs). */
  watch(listener: (state: BreakerState, name: string) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * True when a call may go to the dependency now: closed, or the half-open trial.
   * With a probe, the probe is the only trial, so no request ever waits on one.
   */
  allow(): boolean {
    if (this.#state === "closed") return true;
    if (this.#trial || this.#probe !== null) return false;
    if (this.#now() < this.#openUntil) return false;
    this.#trial = true;
    this.#set("half-open");
    return true;
  }

  /** Runs `fn` unless the breaker is open; its outcome counts towards the state. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.allow()) return Promise.reject(new BreakerOpenError(this.name));
    let call: Promise<T>;
    try {
      call = fn();
    } catch (error) {
      this.#settle(error);
      return Promise.reject(error);
    }
    if (this.#timeoutMs > 0) call = withTimeout(call, this.#timeoutMs, this.name);
    return call.then(
      (value) => {
        this.success();
        return value;
      },
      (error: unknown) => {
        this.#settle(error);
        throw error;
      },
    );
  }

  success(): void {
    this.#failures = 0;
    this.#trial = false;
    if (this.#state !== "closed") {
      this.#stopProbing();
      this.#set("closed");
    }
  }

  failure(): void {
    this.#failures++;
    if (this.#state === "half-open" || this.#failures >= this.#threshold) this.#open();
  }

  /** Stops the probe timer (shutdown). */
  close(): void {
    this.#closed = true;
    this.#stopProbing();
  }

  #settle(error: unknown): void {
    if (this.#isFailure(error)) this.failure();
    else if (this.#trial) {
      // The trial reached the dependency and got an answer: it is up.
      this.success();
    }
  }

  #open(): void {
    this.#trial = false;
    this.#openUntil = this.#now() + this.#openMs;
    if (this.#state !== "open") {
      this.opened++;
      this.#set("open");
    }
    this.#startProbing();
  }

  #startProbing(): void {
    if (this.#probe === null || this.#timer !== null || this.#closed) return;
    const probe = this.#probe;
    this.#timer = setInterval(
      () => {
        if (this.#state === "closed" || this.#trial || this.#now() < this.#openUntil) return;
        this.#trial = true;
        this.#set("half-open");
        const attempt = this.#timeoutMs > 0 ? withTimeout(probe(), this.#timeoutMs, this.name) : probe();
        attempt.then(
          (up) => (up ? this.success() : this.#open()),
          () => this.#open(),
        );
      },
      Math.min(this.#openMs, 250),
    );
    this.#timer.unref();
  }

  #stopProbing(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #set(state: BreakerState): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state, this.name);
  }
}

function withTimeout<T>(call: Promise<T>, ms: number, name: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new BreakerTimeoutError(name, ms)), ms);
    call.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
