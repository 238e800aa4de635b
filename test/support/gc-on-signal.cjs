// Test instrumentation preloaded into a `pgtls serve` child (node --expose-gc --require …): SIGUSR2 runs a full
// garbage collection, so a memory test can read RSS without V8's lazy collection blurring a leak, and (when
// GC_REPORT_FILE is set) appends process.memoryUsage() after it as one JSON line, so the test can tell the JS heap
// from native memory. Changes nothing else in the gateway.
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc();
  const file = process.env.GC_REPORT_FILE;
  if (file) require('node:fs').appendFileSync(file, `${JSON.stringify(process.memoryUsage())}\n`);
});
