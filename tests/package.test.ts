/**
 * The package as a consumer gets it: `npm pack` (which builds, through `prepack`), then a project
 * made from the tarball in a temporary folder, offline: the tarball unpacked into its node_modules,
 * and the packages a consumer installs beside it (webgpu and sharp for Node, @types/node) linked
 * from this repository's node_modules.
 *
 * - the tarball holds what is useful (the bundle, declarations, the CLI build, LICENSE, README),
 *   no source maps and no sources;
 * - a default strict TypeScript project (`tsc --init` of the TypeScript in use, with library checks
 *   on, and without "@webgpu/types" in its types) compiles README.md's two "Using it" examples
 *   against the declarations, which must bring the WebGPU types themselves;
 * - the compiled Node example runs on the build (dist/index.js) as it does on the sources;
 * - the installed `etam` runs from dist/node, and without sharp it says what to install.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readmeBlocks } from './helpers.js';

const REPO = resolve(__dirname, '..');
const TSC = join(REPO, 'node_modules/typescript/bin/tsc');

let tmp: string;
let tarball: string;
let files: string[];
let consumer: string;

interface Ran { status: number | null; stdout: string; stderr: string; error?: Error }

/**
 * Runs a command to its end, asynchronously: a build or a compile takes a while, and a blocked
 * event loop would starve vitest's own messages to the worker (spawnSync must not be used here).
 */
function run(cmd: string, args: string[], cwd: string): Promise<Ran> {
  return new Promise((res) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, npm_config_update_notifier: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const r: Ran = { status: null, stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (d: string) => { r.stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { r.stderr += d; });
    child.on('error', (e) => { r.error = e; });
    child.on('close', (code) => { r.status = code; res(r); });
  });
}

const show = (r: Ran): string => `exit ${r.status}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}\n${r.stderr}`;

function link(name: string): void {
  const to = join(consumer, 'node_modules', name);
  mkdirSync(dirname(to), { recursive: true });
  symlinkSync(join(REPO, 'node_modules', name), to, 'dir');
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'etam-package-'));
  const t0 = performance.now();
  const r = await run('npm', ['pack', '--json', '--pack-destination', tmp], REPO);
  if (r.status !== 0) throw new Error(`npm pack failed: ${show(r)}`);
  // npm prints the build's output (prepack) before the JSON
  const json = r.stdout.search(/^\[\s*\{/m);
  if (json < 0) throw new Error(`npm pack printed no JSON: ${show(r)}`);
  const info = JSON.parse(r.stdout.slice(json)) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
  tarball = join(tmp, info[0]!.filename);
  files = info[0]!.files.map((f) => f.path);
  console.log(`npm pack (with the build): ${((performance.now() - t0) / 1000).toFixed(0)} s; ${info[0]!.filename}: ` +
    `${(info[0]!.size / 1024).toFixed(1)} kB packed, ${(info[0]!.unpackedSize / 1024).toFixed(1)} kB unpacked, ${files.length} files`);

  // the consumer: the tarball unpacked as npm would, and what the README tells a Node user to install
  consumer = join(tmp, 'consumer');
  const pkg = join(consumer, 'node_modules', 'efficienttam-webgpu');
  mkdirSync(pkg, { recursive: true });
  const x = await run('tar', ['-xzf', tarball, '-C', pkg, '--strip-components=1'], tmp);
  if (x.status !== 0) throw new Error(`tar failed: ${show(x)}`);
  for (const dep of ['@webgpu/types', '@types/node', 'webgpu', 'sharp']) link(dep);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
}, 600_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('ships the bundle, declarations, the CLI build, LICENSE and README; no maps, no sources', () => {
    for (const f of ['LICENSE', 'README.md', 'package.json', 'bin/etam.js', 'dist/index.js', 'dist/index.d.ts', 'dist/node/cli/main.js']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('src/') || f.startsWith('dist/demo/') || f.startsWith('tests/'))).toEqual([]);
    expect(readFileSync(join(consumer, 'node_modules/efficienttam-webgpu/LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
    // the declarations bring the WebGPU types they use
    expect(readFileSync(join(consumer, 'node_modules/efficienttam-webgpu/dist/index.d.ts'), 'utf8'))
      .toMatch(/^\/\/\/ <reference types="@webgpu\/types"/m);
    const pkg = JSON.parse(readFileSync(join(consumer, 'node_modules/efficienttam-webgpu/package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toContain('@webgpu/types');
  });
});

describe('a strict TypeScript consumer project made from the tarball', () => {
  it("compiles README.md's examples (tsc --init defaults, library checks on, no @webgpu/types in its types)", async () => {
    const init = await run(process.execPath, [TSC, '--init'], consumer);
    expect(init.status, show(init)).toBe(0);
    const path = join(consumer, 'tsconfig.json');
    let cfg = readFileSync(path, 'utf8');
    const patch = (from: RegExp, to: string) => {
      expect(cfg, `tsc --init's tsconfig has ${from}`).toMatch(from);
      cfg = cfg.replace(from, to);
    };
    patch(/"skipLibCheck": true/, '"skipLibCheck": false'); // check the package's declarations too
    patch(/"types": \[\]/, '"types": ["node"]'); // a Node project; not "@webgpu/types"
    patch(/"compilerOptions": \{/, '"compilerOptions": {\n    "outDir": "out",');
    expect(cfg).toMatch(/"strict": true/);
    writeFileSync(path, cfg);

    const [nodeExample, browserExample] = await (async () => {
      const blocks = await readmeBlocks('## Using it');
      return [blocks.find((b) => b.includes('decodeImageFile('))!, blocks.find((b) => b.includes('videoFrames('))!];
    })();
    writeFileSync(join(consumer, 'node.ts'), nodeExample);
    // the browser example continues from a page that has a model, a playing video and a WebGPU canvas
    writeFileSync(join(consumer, 'browser.ts'), [
      "import { VideoPredictor, videoFrames, type EfficientTAM } from 'efficienttam-webgpu';",
      'declare const model: EfficientTAM;',
      'declare const video: HTMLVideoElement;',
      'declare const canvasContext: GPUCanvasContext;',
      'export {};',
      browserExample,
    ].join('\n'));
    const t0 = performance.now();
    const tsc = await run(process.execPath, [TSC, '-p', consumer], consumer);
    console.log(`consumer tsc: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(tsc.stdout + tsc.stderr, show(tsc)).toBe('');
    expect(tsc.status).toBe(0);
    expect(existsSync(join(consumer, 'out/node.js'))).toBe(true);
  }, 300_000);

  it('the compiled Node example runs on the build (dist/index.js), webgpu and sharp', async () => {
    // run from the repository: the example reads ../shared as a person in a clone would
    const r = await run(process.execPath, [join(consumer, 'out/node.js')], REPO);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/^3 masks of 960x540 \(1555200 bytes\), predicted IoUs /m);
  }, 300_000);
});

describe('the installed etam command', () => {
  const etam = () => join(consumer, 'node_modules/efficienttam-webgpu/bin/etam.js');

  it('runs the build in dist/node (no sources in the package)', async () => {
    const r = await run(process.execPath, [etam(), 'info', '../shared/golden/tiny'], REPO);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/image size: 128x128/);
  });

  it('without sharp, says what to install (no stack trace) and writes nothing', async () => {
    rmSync(join(consumer, 'node_modules/sharp'));
    const out = join(tmp, 'no-sharp-out');
    for (const args of [
      ['segment', '../shared/data/bedroom/00000.jpg', '-w', '../shared/golden/tiny', '--point', '5,5', '-o', out],
      ['track', '../shared/data/bedroom', '-w', '../shared/golden/tiny', '--object', 'point=5,5', '-o', out],
    ]) {
      const r = await run(process.execPath, [etam(), ...args], REPO);
      expect(r.status, show(r)).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^etam ${args[0]}: error: .*needs the 'sharp' package, which is not installed: npm install sharp$`, 'm'));
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(existsSync(out)).toBe(false);
    }
    link('sharp');
    expect(statSync(join(consumer, 'node_modules/sharp')).isDirectory()).toBe(true);
  });
});
