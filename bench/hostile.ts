/**
 * The hostile-file probes of issue 11: each probe builds a file (tests/checkpoints.ts), feeds it to
 * the converter or the safetensors reader in a child process, and reports the outcome (the error
 * class and the start of its message, or what came out), the wall time and the child's peak RSS.
 *
 *   npx tsx bench/hostile.ts [--src DIR] [--only a,b] [--timeout S]
 *
 * `--src` points the children at another copy of src/ (e.g. `git archive main src | tar -x -C
 * /tmp/main-src`) to measure before/after. Each child runs with a 6 GiB JS heap limit and under the
 * timeout (default 150 s), so a probe that would take all memory or hang is stopped and
 * reported as such (the aliased probe is sized to want ~1.7 GB, not the 8 GB). CPU only; not a test (the timings depend on the machine).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { resourceUsage } from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as C from '../tests/checkpoints.js';

const TINY = '/work/shared/golden/tiny';
const MiB = 2 ** 20;

interface Probe {
  name: string;
  what: string;
  /** returns a short description of what came out */
  run: (src: string) => Promise<string>;
}

async function convertBytes(src: string, bytes: Uint8Array, source: string): Promise<string> {
  const m = await import(pathToFileURL(resolve(src, 'convert/convert.ts')).href);
  const out: Uint8Array = m.convertCheckpoint(bytes, { source });
  const st = await import(pathToFileURL(resolve(src, 'io/safetensors.ts')).href);
  let names: string[];
  try {
    names = st.parseSafetensors(out, 'out.safetensors').names();
  } catch (e) {
    return `wrote ${out.byteLength} bytes that do not read back: ${(e as Error).name}: ${(e as Error).message.slice(0, 120)}`;
  }
  return `ok: ${out.byteLength} bytes out, tensors ${JSON.stringify(names.slice(0, 4))}${names.length > 4 ? '...' : ''}`;
}

async function parseSt(src: string, bytes: Uint8Array): Promise<string> {
  const st = await import(pathToFileURL(resolve(src, 'io/safetensors.ts')).href);
  const f = st.parseSafetensors(bytes, 'probe.safetensors');
  return `ok: tensors ${JSON.stringify(f.names())}`;
}

function safetensorsHeader(header: string, dataLen: number): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

/** Serves a body on 127.0.0.1 and loads it with loadWeights; stops after `seconds`. */
async function loadFromServer(src: string, handler: (res: import('node:http').ServerResponse) => void, seconds: number): Promise<string> {
  const server = createServer((_req, res) => handler(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/w.safetensors`;
  const m = await import(pathToFileURL(resolve(src, 'weights/load.ts')).href);
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), seconds * 1000);
  try {
    await m.loadWeights(url, { signal: ac.signal });
    return 'ok (loaded)';
  } catch (e) {
    if ((e as Error).name === 'AbortError') return `still reading after ${seconds} s (aborted by the probe), rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`;
    throw e;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    server.close();
  }
}

const chunk = new Uint8Array(1 << 20).fill(0x20);

const PROBES: Probe[] = [
  { name: 'tiny', what: 'the tiny checkpoint (5.3 MB), converted', run: (s) => convertBytes(s, new Uint8Array(readFileSync(`${TINY}/checkpoint.pt`)), 'checkpoint.pt') },
  { name: 'long4-200k', what: 'one 200 KB LONG4 integer', run: (s) => convertBytes(s, C.long4Checkpoint(200_000), 'long4.pt') },
  { name: 'long4-2m', what: 'one 2 MB LONG4 integer', run: (s) => convertBytes(s, C.long4Checkpoint(2_000_000), 'long4.pt') },
  { name: 'dicts-20m', what: '20 MB of EMPTY_DICT', run: (s) => convertBytes(s, C.containerOpsCheckpoint(20_000_000, 0x7d), 'dicts.pt') },
  { name: 'marks-20m', what: '20 MB of MARK', run: (s) => convertBytes(s, C.containerOpsCheckpoint(20_000_000, 0x28), 'marks.pt') },
  { name: 'memoize-20m', what: '20 MB of EMPTY_LIST then MEMOIZE', run: (s) => {
    const p = new C.Pickle().op(0x5d);
    p.b.repeat([0x94], 20_000_000);
    return convertBytes(s, C.checkpointZip(p.bytes()), 'memo.pt');
  } },
  { name: 'nones-20m', what: '20 MB of NONE (a stack of 20 million)', run: (s) => convertBytes(s, C.containerOpsCheckpoint(20_000_000, 0x4e), 'nones.pt') },
  { name: 'stride0', what: 'a 16-byte storage viewed as [16384, 16384] with stride 0', run: (s) => convertBytes(s, C.strideZeroCheckpoint(16384, 16384), 'stride0.pt') },
  { name: 'aliased', what: 'a 4.4 MB file: one 4.4 MB storage viewed by 400 tensors', run: (s) => convertBytes(s, C.aliasedCheckpoint(1_100_000, 400), 'aliased.pt') },
  { name: 'shared-shape', what: 'a 2.8 MB file: 20,000 tensors sharing one memoised 100,000-dim size/stride tuple', run: (s) => convertBytes(s, C.sharedShapeCheckpoint(100_000, 20_000), 'shape.pt') },
  { name: 'shared-tensor', what: 'a 0.8 MB file: one 100,000-dim tensor under 50,000 keys', run: (s) => convertBytes(s, C.sharedTensorCheckpoint(100_000, 50_000), 'keys.pt') },
  { name: 'zip-extra', what: 'tiny checkpoint, central-directory extra length 0xFFFF', run: (s) => convertBytes(s, C.withCentralExtraLength(new Uint8Array(readFileSync(`${TINY}/checkpoint.pt`)), 0xffff), 'extra.pt') },
  { name: 'nested-key', what: 'a tensor key nested 1,000,000 lists deep', run: (s) => convertBytes(s, C.nestedKeyCheckpoint(1_000_000), 'nested.pt') },
  { name: 'cyclic-key', what: 'a tensor key that is a list containing itself', run: (s) => convertBytes(s, C.cyclicKeyCheckpoint(), 'cyclic.pt') },
  { name: 'deep-pid', what: 'a persistent id nested 1,000,000 tuples deep', run: (s) => convertBytes(s, C.checkpointZip(C.deepPersistentIdPickle(1_000_000)), 'deep.pt') },
  { name: 'appends-300k', what: 'APPENDS of 300,000 items', run: (s) => convertBytes(s, C.appendsCheckpoint(300_000), 'appends.pt') },
  { name: 'class-constructor', what: 'storage class torch.constructor', run: (s) => convertBytes(s, C.storageClassCheckpoint('constructor'), 'ctor.pt') },
  { name: 'class-proto', what: 'storage class torch.__proto__', run: (s) => convertBytes(s, C.storageClassCheckpoint('__proto__'), 'proto.pt') },
  { name: 'name-proto', what: 'tensors named "__proto__" and "a"', run: (s) => convertBytes(s, C.namedTensorsCheckpoint(['__proto__', 'a']), 'proto.pt') },
  { name: 'name-metadata', what: 'a tensor named "__metadata__"', run: (s) => convertBytes(s, C.namedTensorsCheckpoint(['__metadata__']), 'md.pt') },
  { name: 'name-int-str', what: 'tensor keys 1 (int) and "1" (str)', run: (s) => convertBytes(s, C.namedTensorsCheckpoint([1, '1']), 'intstr.pt') },
  { name: 'st-dup', what: 'safetensors header with a duplicate key', run: (s) => parseSt(s, safetensorsHeader(
    '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8)) },
  { name: 'st-dtype-ctor', what: 'safetensors dtype "constructor"', run: (s) => parseSt(s, safetensorsHeader(
    '{"a":{"dtype":"constructor","shape":[1],"data_offsets":[0,4]}}', 4)) },
  { name: 'url-1e12', what: 'loadWeights: Content-Length 1e12', run: (s) => loadFromServer(s, (res) => {
    res.writeHead(200, { 'content-length': '1000000000000' });
    res.write(safetensorsHeader('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 0));
  }, 20) },
  { name: 'url-endless', what: 'loadWeights: a body that never ends (no length)', run: (s) => loadFromServer(s, (res) => {
    res.writeHead(200, {});
    res.write(safetensorsHeader('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
    const more = () => { if (!res.destroyed) res.write(chunk, () => setImmediate(more)); };
    more();
  }, 20) },
];

async function child(name: string, src: string): Promise<void> {
  const probe = PROBES.find((p) => p.name === name)!;
  const t0 = performance.now();
  let outcome: string;
  try {
    outcome = await probe.run(src);
  } catch (e) {
    const err = e as Error;
    outcome = `${err?.constructor?.name ?? typeof e}: ${String(err?.message ?? e).replace(/\s+/g, ' ').slice(0, 160)}`;
  }
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ outcome, ms, maxRssMiB: resourceUsage().maxRSS / 1024 }) + '\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
  const src = resolve(opt('--src') ?? fileURLToPath(new URL('../src', import.meta.url)));
  if (opt('--child')) return child(opt('--child')!, src);
  const only = opt('--only')?.split(',');
  const timeout = Number(opt('--timeout') ?? 150);
  const self = fileURLToPath(import.meta.url);
  console.log(`src: ${src}\n`);
  console.log('| probe | input | outcome | time | peak RSS |\n|---|---|---|---|---|');
  for (const p of PROBES) {
    if (only && !only.includes(p.name)) continue;
    const r = spawnSync('bash', ['-c', `NODE_OPTIONS=--max-old-space-size=6144 exec timeout -s KILL ${timeout} npx tsx "$0" --child "$1" --src "$2"`, self, p.name, src],
      { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
    if (line) {
      const j = JSON.parse(line) as { outcome: string; ms: number; maxRssMiB: number };
      console.log(`| ${p.name} | ${p.what} | ${j.outcome.replace(/\|/g, '\\|')} | ${(j.ms / 1000).toFixed(2)} s | ${j.maxRssMiB.toFixed(0)} MiB |`);
    } else {
      const why = r.status === 137 || r.signal === 'SIGKILL' ? `killed after the ${timeout} s timeout` : `crashed (status ${r.status}): ${(r.stderr || '').trim().split('\n').filter(Boolean).slice(-2).join(' ').slice(0, 200)}`;
      console.log(`| ${p.name} | ${p.what} | ${why.replace(/\|/g, '\\|')} | | |`);
    }
  }
}

void main();
