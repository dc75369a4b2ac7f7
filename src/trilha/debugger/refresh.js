// A read kept current without flooding the API: what the server alone can
// answer (counts, error groups, breaker states) is refetched when something
// happened (an event from the stream), at most once every `everyMs`, and every
// `idleMs` when nothing happens (breakers close and alerts resolve without an
// event). One instance per read; stop() when its view goes.

export class Throttled {
  /** load() -> Promise: the fetch-and-show; it handles its own errors. */
  constructor(load, { everyMs = 2000, idleMs = 15000 } = {}) {
    this.load = load;
    this.everyMs = everyMs;
    this.idleMs = idleMs;
    this.last = 0;
    this.timer = 0;
    this.soon = false;
    this.stopped = false;
  }

  /** Fetch now, and again after `idleMs` unless something happens sooner. */
  refresh() {
    if (this.stopped) return Promise.resolve();
    this.last = Date.now();
    this.soon = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), this.idleMs);
    return this.load();
  }

  /** Something changed: fetch now, or once `everyMs` have passed since the last time. */
  changed() {
    if (this.soon || this.stopped) return;
    const wait = this.last + this.everyMs - Date.now();
    if (wait <= 0) {
      this.refresh();
      return;
    }
    this.soon = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), wait);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
