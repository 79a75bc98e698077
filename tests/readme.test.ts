/**
 * README.md's "Using it" example, run as it is written there (taken from README.md at test time):
 * the tiny golden model with its config.json, an image decoded with decodeImageFile, a click,
 * then a few frames tracked. 'efficienttam-webgpu' resolves to src/index.ts here (vitest alias);
 * tests/package.test.ts runs the same code against the packed tarball's build.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { readmeBlocks } from './helpers.js';

const OUT = resolve(__dirname, '../test-output/readme');

describe('README "Using it"', () => {
  it('has a Node example and a browser example', async () => {
    const blocks = await readmeBlocks('## Using it');
    expect(blocks.filter((b) => b.includes('decodeImageFile('))).toHaveLength(1);
    expect(blocks.filter((b) => b.includes('videoFrames('))).toHaveLength(1);
  });

  it('the Node example runs as written (tiny model: one click, four tracked frames)', async () => {
    const code = (await readmeBlocks('## Using it')).find((b) => b.includes('decodeImageFile('))!;
    // the example reads ../shared relative to the repository, as a person in a clone runs it
    expect(process.cwd()).toBe(resolve(__dirname, '..'));
    mkdirSync(OUT, { recursive: true });
    const file = resolve(OUT, 'node-example.ts');
    writeFileSync(file, `${code}\nexport {};\n`);
    const log = vi.spyOn(console, 'log');
    try {
      await import(/* @vite-ignore */ pathToFileURL(file).href);
      const printed = log.mock.calls.map((c) => c.join(' ')).join('\n');
      // what the example prints: three masks at the picture's size, with their predicted IoUs
      expect(printed).toMatch(/^3 masks of 960x540 \(1555200 bytes\), predicted IoUs -?\d\.\d\d, -?\d\.\d\d, -?\d\.\d\d$/m);
    } finally {
      log.mockRestore();
    }
  }, 300_000);
});
