/**
 * Converter benchmark on a synthetic official-size checkpoint: the names and shapes of a variant's
 * manifest (default efficienttam_s, 34.1M parameters), random f32 data, written in the format
 * torch.save uses (a STORED zip holding archive/data.pkl and one archive/data/<key> per storage)
 * by the small writer below; then converted by the CLI in a child process, which reports its time
 * and peak RSS, to f32 and to f16 safetensors; and loaded + converted in this process through
 * loadWeights.
 *
 *   npx tsx bench/convert.ts [variant] [--keep]
 *
 * `writeTorchCheckpoint` is also used by tests (tests/manifest.test.ts) on small manifests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { crc32 } from '../src/convert/zip.js';
import { VARIANTS, type Variant } from '../src/model/config.js';
import { loadWeights } from '../src/weights/load.js';
import { manifest, manifestNumel, type Manifest } from '../src/weights/manifest.js';

// ------------------------------------------------------------------------------------------------
// a minimal torch.save writer
// ------------------------------------------------------------------------------------------------

const enc = new TextEncoder();

/** Little-endian bytes of an unsigned integer. */
function le(n: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(n / 256 ** i) % 256;
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out;
}

/** The pickle opcodes torch.save emits for {"model": OrderedDict(name -> tensor)}. */
class PickleWriter {
  private parts: number[] = [0x80, 2]; // PROTO 2
  op(...b: number[]): this { for (const x of b) this.parts.push(x); return this; }
  str(s: string): this { const u = enc.encode(s); this.op(0x58, ...le(u.length, 4)); for (const x of u) this.parts.push(x); return this; } // BINUNICODE
  int(n: number): this { return n >= 0 && n < 256 ? this.op(0x4b, n) : this.op(0x4a, ...le(n >>> 0, 4)); } // BININT1 / BININT
  global(module: string, name: string): this { return this.op(0x63, ...enc.encode(`${module}\n${name}\n`)); } // GLOBAL
  tuple(xs: number[]): this { this.op(0x28); xs.forEach((x) => this.int(x)); return this.op(0x74); } // MARK ... TUPLE
  /** torch._utils._rebuild_tensor_v2(persistent ('storage', torch.FloatStorage, key, 'cpu', numel), 0, size, stride, False, OrderedDict()) */
  tensor(key: string, shape: number[]): this {
    const numel = shape.reduce((a, b) => a * b, 1);
    const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    this.global('torch._utils', '_rebuild_tensor_v2').op(0x28); // MARK (args)
    this.op(0x28).str('storage').global('torch', 'FloatStorage').str(key).str('cpu').int(numel).op(0x74, 0x51); // TUPLE BINPERSID
    this.int(0).tuple(shape).tuple(stride).op(0x89); // offset, size, stride, NEWFALSE
    return this.global('collections', 'OrderedDict').op(0x29, 0x52, 0x74, 0x52); // () REDUCE, TUPLE, REDUCE
  }
  bytes(): Uint8Array { return new Uint8Array([...this.parts, 0x2e]); } // STOP
}

/**
 * A STORED zip of `entries`, each entry's data aligned to 64 bytes in the file (padding in the
 * local header's extra field, as torch.save does).
 */
export function writeZip(entries: [string, Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nb = enc.encode(name);
    const headerLen = 30 + nb.length;
    const pad = (64 - ((offset + headerLen + 4) % 64)) % 64; // + 4: the extra field's own header
    const extra = concat([le(0xcafe, 2), le(pad, 2), new Uint8Array(pad)]);
    const crc = crc32(data);
    const common = (extraLen: number) => concat([le(0, 2), le(0, 2), le(0, 2), le(0, 2), le(crc, 4),
      le(data.length, 4), le(data.length, 4), le(nb.length, 2), le(extraLen, 2)]);
    const local = concat([le(0x04034b50, 4), le(20, 2), common(extra.length), nb, extra]);
    central.push(concat([le(0x02014b50, 4), le(20, 2), le(20, 2), common(0), le(0, 2), le(0, 2), le(0, 2), le(0, 4), le(offset, 4), nb]));
    parts.push(local, data);
    offset += local.length + data.length;
  }
  const cd = concat(central);
  return concat([...parts, cd, le(0x06054b50, 4), le(0, 4), le(entries.length, 2), le(entries.length, 2),
    le(cd.length, 4), le(offset, 4), le(0, 2)]);
}

/** A PyTorch checkpoint {"model": state_dict} of f32 tensors, as torch.save writes it. */
export function writeTorchCheckpoint(tensors: { name: string; shape: number[]; data: Float32Array }[]): Uint8Array {
  const p = new PickleWriter();
  p.op(0x7d).str('model').global('collections', 'OrderedDict').op(0x29, 0x52); // {} 'model' OrderedDict()
  p.op(0x28); // MARK: the items
  tensors.forEach((t, i) => p.str(t.name).tensor(String(i), t.shape));
  p.op(0x75, 0x73); // SETITEMS into the OrderedDict, SETITEM into the dict
  const entries: [string, Uint8Array][] = [['archive/data.pkl', p.bytes()], ['archive/byteorder', enc.encode('little')]];
  tensors.forEach((t, i) => entries.push([`archive/data/${i}`, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
  entries.push(['archive/version', enc.encode('3\n')]);
  return writeZip(entries);
}

/** Random data (uniform in [-0.1, 0.1), xorshift32) for every tensor of a manifest. */
export function syntheticTensors(m: Manifest, seed = 1): { name: string; shape: number[]; data: Float32Array }[] {
  let s = seed >>> 0 || 1;
  return m.map((e) => {
    const data = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      data[i] = (s / 4294967296 - 0.5) * 0.2;
    }
    return { name: e.name, shape: e.shape, data };
  });
}

// ------------------------------------------------------------------------------------------------
// the benchmark
// ------------------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  const variant = (argv.find((a) => !a.startsWith('-')) ?? 'efficienttam_s') as Variant;
  if (!(VARIANTS as readonly string[]).includes(variant)) throw new Error(`unknown variant ${variant}; known: ${VARIANTS.join(', ')}`);
  const keep = argv.includes('--keep');
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  const dir = mkdtempSync(join(tmpdir(), 'etam-convert-'));
  const pt = join(dir, `${variant}.pt`);
  try {
    const m = manifest(variant);
    let t0 = performance.now();
    const bytes = writeTorchCheckpoint(syntheticTensors(m));
    writeFileSync(pt, bytes);
    console.log(`synthetic ${variant}: ${m.length} tensors, ${(manifestNumel(m) / 1e6).toFixed(2)}M parameters, ` +
      `${mb(bytes.byteLength)} MiB .pt (written in ${(performance.now() - t0).toFixed(0)} ms)`);

    // The CLI in a fresh process: its own time and peak RSS.
    for (const f16 of [false, true]) {
      const out = join(dir, `${variant}${f16 ? '.f16' : ''}.safetensors`);
      t0 = performance.now();
      const log = execFileSync('npx', ['tsx', 'src/convert/cli.ts', pt, out, ...(f16 ? ['--f16'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      console.log(`\ncli${f16 ? ' --f16' : ''} (wall ${(performance.now() - t0).toFixed(0)} ms incl. process start):\n${log.trim()}`);
      console.log(`output ${mb(statSync(out).size)} MiB`);
    }

    // In this process: loadWeights on the .pt (streamed read + conversion on the fly).
    t0 = performance.now();
    const f = await loadWeights(pt);
    console.log(`\nloadWeights(.pt) in-process: ${(performance.now() - t0).toFixed(0)} ms, ${f.names().length} tensors; ` +
      `rss now ${mb(process.memoryUsage().rss)} MiB, peak ${mb(process.resourceUsage().maxRSS * 1024)} MiB (includes generating the checkpoint)`);
  } finally {
    if (keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
