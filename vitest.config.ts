import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// Dawn prints two notices of limits it clamps ("maxDynamic...BuffersPerPipelineLayout artificially
// reduced ...") from native code while a test file's process enumerates adapters. The library
// filters them where it can reopen stderr (a terminal or a pipe: src/gpu/device.ts); a test
// file's process writes to a socket that vitest pipes here, so they are dropped here.
const DAWN_NOTICE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?\n/gm;
const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean;
process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
  if (typeof chunk === 'string' || chunk instanceof Uint8Array) {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (text.includes('artificially reduced')) {
      return write(text.replace(DAWN_NOTICE, ''), ...rest);
    }
  }
  return write(chunk, ...rest);
}) as typeof process.stderr.write;

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
