import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests open real sockets; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report lets .ci/run print "N passed, N failed" after the README's plain `npm test`.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});
