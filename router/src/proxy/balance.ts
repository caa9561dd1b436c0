/**
 * Which origin of a tenant's upstreams takes an exchange: least outstanding of two —
 * the round-robin choice, or the next origin when it has fewer exchanges in flight
 * from this router. A black-holed or slow instance keeps its requests in flight, so it
 * stops being chosen long before a timeout or an error could eject it.
 */
export class Balance {
  #rr = 0;
  /** Exchanges in flight per origin, for tenants with several. */
  readonly #outstanding = new Map<string, number>();

  /**
   * The index in `origins` to try first (the forwarder tries the next ones in order
   * when it must). With several origins, the one at that index is counted as
   * outstanding until `done`.
   */
  pick(origins: readonly string[]): number {
    let start = this.#rr++;
    if (origins.length <= 1) return start;
    const first = origins[start % origins.length] as string;
    const second = origins[(start + 1) % origins.length] as string;
    if ((this.#outstanding.get(second) ?? 0) < (this.#outstanding.get(first) ?? 0)) start++;
    const chosen = origins[start % origins.length] as string;
    this.#outstanding.set(chosen, (this.#outstanding.get(chosen) ?? 0) + 1);
    return start;
  }

  /** The exchange counted on `origin` ended. */
  done(origin: string): void {
    const left = (this.#outstanding.get(origin) ?? 1) - 1;
    if (left > 0) this.#outstanding.set(origin, left);
    else this.#outstanding.delete(origin);
  }
}
