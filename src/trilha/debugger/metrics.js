// Measurement hooks read by bench/debugger.py and the browser tests
// (window.trilhaDebugger). Counting is a few integer increments on paths that
// already run, so the page pays nothing for being measurable.

export const metrics = {
  /** ms since navigation start when the list's first page was on screen */
  firstRenderMs: null,
  /** ms since navigation start when the per-state counts were on screen */
  countsShownMs: null,
  /** SSE events received by the list / applied to rows on screen (others only move the counts) */
  eventsReceived: 0,
  eventsApplied: 0,
  /** animation-frame flushes that wrote to the table */
  renders: 0,
  /** rows in the list now */
  rows: 0,
  /** single executions refetched to see whether they came to match the filters, and rows so inserted */
  refetches: 0,
  rowsInserted: 0,
  /** re-queries of the list's first page (many candidates at once, or stuck) */
  requeries: 0,
};

window.trilhaDebugger = metrics;
