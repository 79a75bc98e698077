import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // the README's examples import the package by name (tests/readme.test.ts)
  resolve: { alias: { 'efficienttam-webgpu': resolve(import.meta.dirname, 'src/index.ts') } },
  test: {
    include: ['tests/**/*.test.ts'],
    // Each file gets its own process (Dawn per process); two cores, so at most two at once.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
