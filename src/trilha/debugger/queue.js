// A small work queue keyed by id, for refetching executions while a thousand
// others stream past, without ever nearing the key's rate limit (50 requests a
// second by default, shared with the key's other tabs):
//  - a key asked for several times before its turn is fetched once (coalesced);
//  - a key is not fetched again within `cooldownMs` of its last fetch;
//  - at most `concurrency` single fetches run at once, and they start at least
//    `minGapMs` apart (10 a second at most);
//  - when `batchFrom` keys or more are due together, they are handed to
//    `batch(keys)` instead, one batch at a time and at most one every
//    `batchEveryMs`: one request answers them all (a list re-query);
//  - at most `limit` keys wait (past that a key is dropped: the next event for it
//    asks again);
//  - a key asked for while its fetch runs is fetched once more after it, so a
//    change that happened during the request is never missed.

export class KeyedQueue {
  /**
   * work(key) / batch(keys) -> Promise; they handle their own expected failures
   * (the network): anything they throw is a bug, reported as an uncaught error.
   */
  constructor(work, options = {}) {
    const { concurrency = 3, delayMs = 150, cooldownMs = 2000, minGapMs = 100, limit = 500, batch = null, batchFrom = 5, batchEveryMs = 1000 } = options;
    Object.assign(this, { work, concurrency, delayMs, cooldownMs, minGapMs, limit, batch, batchFrom, batchEveryMs });
    this.waiting = new Map(); // key -> when it may run (ms, Date.now() clock)
    this.running = new Set();
    this.inBatch = new Set();
    this.again = new Set();
    this.done = new Map(); // key -> when its last fetch ended
    this.batching = false;
    this.lastStart = 0;
    this.lastBatch = 0;
    this.timer = 0;
    this.stopped = false;
  }

  /** Whether `key` is waiting or being fetched. */
  has(key) {
    return this.waiting.has(key) || this.running.has(key) || this.inBatch.has(key);
  }

  add(key) {
    if (this.stopped) return;
    if (this.running.has(key) || this.inBatch.has(key)) {
      this.again.add(key);
      return;
    }
    if (this.waiting.has(key) || this.waiting.size >= this.limit) return;
    const last = this.done.get(key);
    this.waiting.set(key, Math.max(Date.now() + this.delayMs, last === undefined ? 0 : last + this.cooldownMs));
    this.schedule();
  }

  /** Forget everything waiting (running fetches finish; their callers check staleness). */
  clear() {
    this.waiting.clear();
    this.again.clear();
    this.done.clear();
    clearTimeout(this.timer);
    this.timer = 0;
  }

  stop() {
    this.stopped = true;
    this.clear();
  }

  batchMode() {
    return Boolean(this.batch) && this.waiting.size >= this.batchFrom;
  }

  schedule() {
    if (this.stopped || !this.waiting.size) return;
    const batching = this.batchMode();
    // the work running now schedules again when it ends
    if (batching ? this.batching : this.running.size >= this.concurrency) return;
    let next = Infinity;
    for (const at of this.waiting.values()) if (at < next) next = at;
    next = Math.max(next, batching ? this.lastBatch + this.batchEveryMs : this.lastStart + this.minGapMs);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.pump(), Math.max(0, next - Date.now()));
  }

  pump() {
    this.timer = 0;
    if (this.stopped) return;
    const now = Date.now();
    const due = [];
    for (const [key, at] of this.waiting) if (at <= now) due.push(key);
    if (this.batch && due.length >= this.batchFrom) {
      if (!this.batching && now >= this.lastBatch + this.batchEveryMs) {
        for (const key of due) this.waiting.delete(key);
        this.runBatch(due);
      }
    } else {
      for (const key of due) {
        if (this.running.size >= this.concurrency || now < this.lastStart + this.minGapMs) break;
        this.waiting.delete(key);
        this.lastStart = now;
        this.run(key);
      }
    }
    this.schedule();
  }

  async run(key) {
    this.running.add(key);
    try {
      await this.work(key);
    } catch (error) {
      reportError(error);
    } finally {
      this.running.delete(key);
      this.finished([key]);
    }
  }

  async runBatch(keys) {
    this.batching = true;
    this.lastBatch = Date.now();
    for (const key of keys) this.inBatch.add(key);
    try {
      await this.batch(keys);
    } catch (error) {
      reportError(error);
    } finally {
      this.batching = false;
      for (const key of keys) this.inBatch.delete(key);
      this.finished(keys);
    }
  }

  finished(keys) {
    const now = Date.now();
    for (const key of keys) this.done.set(key, now);
    if (this.done.size > 4 * this.limit) this.prune();
    for (const key of keys) if (this.again.delete(key)) this.add(key);
    this.schedule();
  }

  prune() {
    const old = Date.now() - this.cooldownMs;
    for (const [key, at] of this.done) if (at < old) this.done.delete(key);
  }
}
