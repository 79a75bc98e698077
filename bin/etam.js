#!/usr/bin/env node
// The `etam` command: runs the built CLI (dist/) when there is one, else the TypeScript source
// through tsx (a devDependency, so this works in a clone after `npm install`).
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const built = ['dist/src/cli/main.js', 'dist/cli/main.js'].map((p) => new URL(p, root)).find((u) => existsSync(u));
let entry = built;
if (!entry) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('etam: no build in dist/ and tsx is not installed: run `npm install` (or `npm run build`) first\n');
    process.exit(1);
  }
  entry = new URL('src/cli/main.ts', root);
}
const { main } = await import(entry.href);
await main(process.argv.slice(2));
