/**
 * Admits batched per turn of the event loop: each one is sent with the others asked
 * for in the same turn in one store round trip (`admitMany`) when the store offers it.
 * Many bucket-sets (tenants, keys) renew their leases at once under load, and one
 * script call for all of them costs the router and Redis far less than one call each.
 */
import type { AdmitCall, Admission, QuotaCheck, RateCheck, Store } from "@portcullis/shared";

/** Most admits sent in one store call. */
const MAX_BATCH = 256;

interface Queued {
  call: AdmitCall;
  resolve: (answer: Admission) => void;
  reject: (error: unknown) => void;
}

export class AdmitBatcher {
  readonly #store: Store;
  #batch: Queued[] = [];
  /**
   * The answers of the batch sent last, handed out: each batch's are handed out after
   * the one before, so answers reach the limiter in the order Redis decided them even
   * when a later batch's round trip ends first (on a cluster, one call per slot).
   */
  #handedOut: Promise<void> = Promise.resolve();

  constructor(store: Store) {
    this.#store = store;
  }

  /** One admit, answered as if sent alone. */
  admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want: number, force = false): Promise<Admission> {
    if (this.#store.admitMany === undefined) return this.#store.admit(rates, quota, want, force);
    return new Promise((resolve, reject) => {
      this.#batch.push({ call: force ? { rates, quota, want, force } : { rates, quota, want }, resolve, reject });
      if (this.#batch.length === 1) setImmediate(() => this.#send());
      else if (this.#batch.length >= MAX_BATCH) this.#send();
    });
  }

  #send(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    const store = this.#store as Required<Pick<Store, "admitMany">>;
    const answered = store.admitMany(batch.map((b) => b.call));
    this.#handedOut = this.#handedOut
      .then(() => answered)
      .then(
        (answers) => {
          for (let i = 0; i < batch.length; i++) (batch[i] as Queued).resolve(answers[i] as Admission);
        },
        (error: unknown) => {
          for (const b of batch) b.reject(error);
        },
      );
  }
}
