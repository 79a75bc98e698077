/**
 * The demo page: `npm run demo` (dev server on http://127.0.0.1:5173; WebGPU needs a secure
 * origin, and localhost is one), `npx vite build --config demo/vite.config.ts` -> dist/demo.
 * The demo imports the library by its package name, resolved to the sources.
 */
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  root: resolve(import.meta.dirname),
  base: './',
  publicDir: false,
  resolve: { alias: { 'efficienttam-webgpu': resolve(import.meta.dirname, '../src/index.ts') } },
  server: { host: '127.0.0.1', port: 5173 },
  preview: { host: '127.0.0.1', port: 4173 },
  build: { outDir: resolve(import.meta.dirname, '../dist/demo'), emptyOutDir: true, target: 'es2022' },
});
