/**
 * The library build: `npm run build` -> dist/index.js (ESM, one file, no runtime dependency) and
 * dist/*.d.ts (tsc -p tsconfig.build.json). The demo has its own config (demo/vite.config.ts).
 *
 * dist/index.js is left unminified (readable, and the page's bundler minifies it); the size report
 * at the end of the build gives what it costs a page: minified (esbuild) and gzipped.
 */
import { gzipSync } from 'node:zlib';
import { transform } from 'esbuild';
import { defineConfig, type Plugin } from 'vite';

/** Prints each emitted chunk's size: raw, minified, minified + gzipped. */
export function sizeReport(): Plugin {
  const lines: string[] = [];
  return {
    name: 'etam-size-report',
    apply: 'build',
    closeBundle() {
      // after vite's own listing, so it is the last thing the build says
      for (const l of lines) console.log(`[size] ${l}`);
    },
    async generateBundle(_opts, bundle) {
      const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;
      for (const chunk of Object.values(bundle)) {
        if (chunk.type !== 'chunk') continue;
        const min = (await transform(chunk.code, { minify: true, format: 'esm', target: 'es2022' })).code;
        const gz = gzipSync(min, { level: 9 }).byteLength;
        lines.push(`${chunk.fileName}: ${kb(chunk.code.length)} raw, ${kb(min.length)} minified, ${kb(gz)} minified + gzipped`);
      }
    },
  };
}

export default defineConfig({
  // the library build has no public dir or html entry
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: false, // the .d.ts files from tsc live there too
    target: 'es2022',
    // unminified, so readable as it is; a map would point at src/, which the package does not ship
    sourcemap: false,
    minify: false,
    lib: { entry: 'src/index.ts', formats: ['es'], fileName: 'index' },
    rollupOptions: {
      // Node-only modules are imported on demand behind variables in the source; keep any stray
      // static reference out of the bundle rather than polyfilled.
      external: [/^node:/, 'webgpu', 'sharp'],
    },
  },
  plugins: [sizeReport()],
});
