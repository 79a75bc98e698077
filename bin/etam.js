#!/usr/bin/env node
// The `etam` command. In a clone (src/ present, tsx installed) it runs the TypeScript source, so it
// is never stale; in an installed package (no src/) it runs the build in dist/node/ (`npm run build`).
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const source = new URL('src/cli/main.ts', root);
const built = new URL('dist/node/cli/main.js', root);
let entry = null;
if (existsSync(source)) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  } catch { /* no tsx: fall back to the build */ }
}
if (!entry && existsSync(built)) entry = built;
if (!entry) {
  process.stderr.write('etam: found neither the build (dist/node/) nor tsx to run the source: run `npm install` (and `npm run build`) first\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main(process.argv.slice(2));
