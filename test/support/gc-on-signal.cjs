// Test instrumentation preloaded into a `pgtls serve` child (node --expose-gc --require …): SIGUSR2 runs a full
// garbage collection, so a memory test can read RSS without V8's lazy collection blurring a leak. Changes nothing
// else in the gateway.
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc();
});
