/**
 * Seeded fuzzing of the two weights formats (issue 11): a few hundred mutations each of the tiny
 * golden's weights.safetensors and checkpoint.pt. Every case must either read (and, for a
 * checkpoint, convert to a safetensors file that reads back) or fail with the library's own
 * error classes; and its cost must stay within structural bounds of the file's size (opcodes,
 * estimated pickle memory, output bytes): no wall-time assertion. Reproduce a case with its seed.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CheckpointError, convertCheckpoint, OUTPUT_PER_INPUT_BYTE, OUTPUT_SLACK, type CheckpointStats } from '../src/convert/convert.js';
import { MEMORY_FLOOR, MEMORY_PER_BYTE, PickleError } from '../src/convert/pickle.js';
import { ZipError } from '../src/convert/zip.js';
import { parseSafetensors, SafetensorsError } from '../src/io/safetensors.js';
import { makeZip, zipEntries } from './checkpoints.js';
import { rng } from './helpers.js';

const TINY = '/work/shared/golden/tiny';
/**
 * Cases per family: 200 + 200 checkpoints (the pickle, the zip), 300 safetensors; about 15 s in
 * all on a busy 2-core machine. ETAM_FUZZ_SCALE=10 runs ten times as many (seeds continue).
 */
const SCALE = Number(process.env.ETAM_FUZZ_SCALE ?? 1);
const CASES = 300 * SCALE;
const CHECKPOINT_CASES = 200 * SCALE;

/** Byte values that tend to matter: limits, signs, opcodes, JSON punctuation. */
const INTERESTING = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe, 0x28, 0x2e, 0x5d, 0x7d, 0x71, 0x68, 0x8b, 0x8a, 0x52, 0x51,
  0x22, 0x2c, 0x3a, 0x5b, 0x7b, 0x30, 0x39, 0x2d, 0x65];

/**
 * One random mutation of `src` within [lo, hi): flip a bit, set interesting bytes, insert, delete,
 * duplicate or move a range, or truncate. Returns a new array.
 */
function mutate(src: Uint8Array, r: () => number, lo = 0, hi = src.length): Uint8Array {
  const at = (n = 0) => lo + Math.floor(r() * Math.max(1, hi - lo - n));
  const len = () => 1 + Math.floor(r() ** 3 * 64);
  const out = (parts: Uint8Array[]) => {
    const o = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let k = 0;
    for (const p of parts) { o.set(p, k); k += p.length; }
    return o;
  };
  switch (Math.floor(r() * 8)) {
    case 0: { const o = src.slice(); const i = at(); o[i]! ^= 1 << Math.floor(r() * 8); return o; }
    case 1: { const o = src.slice(); for (let n = 1 + Math.floor(r() * 4); n > 0; n--) o[at()] = INTERESTING[Math.floor(r() * INTERESTING.length)]!; return o; }
    case 2: { const o = src.slice(); const i = at(4); new DataView(o.buffer).setUint32(Math.min(i, o.length - 4), [0xffffffff, 0x7fffffff, 0x80000000, 0xffff, 0][Math.floor(r() * 5)]!, true); return o; }
    case 3: { const i = at(); const ins = Uint8Array.from({ length: len() }, () => Math.floor(r() * 256)); return out([src.subarray(0, i), ins, src.subarray(i)]); }
    case 4: { const i = at(); return out([src.subarray(0, i), src.subarray(Math.min(src.length, i + len()))]); }
    case 5: { const i = at(); const n = len(); return out([src.subarray(0, i + n), src.subarray(i, i + n), src.subarray(i + n)]); }
    case 6: { const i = at(); const j = at(); const n = len(); const o = src.slice(); o.set(src.subarray(j, Math.min(j + n, src.length)).subarray(0, o.length - i), i); return o; }
    default: return src.subarray(0, at());
  }
}

function classify(e: unknown, allowed: readonly (new (...a: never[]) => Error)[], seed: number): string {
  if (!allowed.some((c) => e instanceof c)) {
    throw new Error(`seed ${seed}: an error of another kind escaped: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message?.slice(0, 300)}`);
  }
  return (e as Error).name;
}

describe('fuzz: mutated tiny checkpoints', () => {
  const original = new Uint8Array(readFileSync(`${TINY}/checkpoint.pt`));
  const entries = zipEntries(original).map(([n, d]) => [n, d.slice()] as [string, Uint8Array]);
  const pklIndex = entries.findIndex(([n]) => n.endsWith('/data.pkl'));
  const allowed = [ZipError, PickleError, CheckpointError] as const;

  function run(bytes: Uint8Array, seed: number, outcomes: Map<string, number>): void {
    const stats = {} as CheckpointStats;
    let outcome: string;
    try {
      const out = convertCheckpoint(bytes, { source: `case-${seed}.pt`, stats });
      expect(out.byteLength, `seed ${seed}`).toBeLessThanOrEqual(OUTPUT_PER_INPUT_BYTE * bytes.length + OUTPUT_SLACK);
      parseSafetensors(out, `out-${seed}`); // what the converter writes reads back
      outcome = 'converted';
    } catch (e) {
      outcome = classify(e, allowed, seed);
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    // the work done is bounded by the file
    if (stats.pickleBytes) {
      expect(stats.opcodes, `seed ${seed}`).toBeLessThanOrEqual(stats.pickleBytes);
      expect(stats.pickleMemory, `seed ${seed}`).toBeLessThanOrEqual(MEMORY_FLOOR + MEMORY_PER_BYTE * stats.pickleBytes);
    }
    expect(stats.outputBytes ?? 0, `seed ${seed}`).toBeLessThanOrEqual(OUTPUT_PER_INPUT_BYTE * bytes.length + OUTPUT_SLACK);
    expect(stats.storageBytes ?? 0, `seed ${seed}`).toBeLessThanOrEqual(bytes.length);
  }

  it(`${CHECKPOINT_CASES} mutations of data.pkl (re-zipped with valid CRCs)`, { timeout: 120_000 * SCALE }, () => {
    const outcomes = new Map<string, number>();
    const pkl = entries[pklIndex]![1];
    for (let seed = 1; seed <= CHECKPOINT_CASES; seed++) {
      const r = rng(seed);
      let m = mutate(pkl, r);
      if (r() < 0.3) m = mutate(m, r);
      const zipped = makeZip(entries.map(([n, d], i) => [n, i === pklIndex ? m : d] as [string, Uint8Array]));
      run(zipped, seed, outcomes);
    }
    console.log('data.pkl mutations:', Object.fromEntries(outcomes));
    expect(outcomes.size).toBeGreaterThan(2); // the mutations reach more than one kind of check
  });

  it(`${CHECKPOINT_CASES} mutations of the zip's bytes (mostly its directory and headers)`, { timeout: 120_000 * SCALE }, () => {
    const outcomes = new Map<string, number>();
    const cdStart = original.length - 40_000; // the central directory, the ZIP64 records and the end record
    for (let seed = 1; seed <= CHECKPOINT_CASES; seed++) {
      const r = rng(100_000 + seed);
      const where = r();
      const m = where < 0.6 ? mutate(original, r, cdStart) : where < 0.8 ? mutate(original, r, 0, 50_000) : mutate(original, r);
      run(m, 100_000 + seed, outcomes);
    }
    console.log('zip mutations:', Object.fromEntries(outcomes));
    expect(outcomes.size).toBeGreaterThan(1);
  });
});

describe('fuzz: mutated tiny safetensors', () => {
  const original = new Uint8Array(readFileSync(`${TINY}/weights.safetensors`));
  const headerEnd = 8 + Number(new DataView(original.buffer, original.byteOffset).getBigUint64(0, true));

  it(`${CASES} mutations, mostly of the header`, { timeout: 120_000 * SCALE }, () => {
    const outcomes = new Map<string, number>();
    for (let seed = 1; seed <= CASES; seed++) {
      const r = rng(200_000 + seed);
      const m = r() < 0.85 ? mutate(original, r, 0, headerEnd) : mutate(original, r);
      let outcome: string;
      try {
        const f = parseSafetensors(m, `case-${seed}.safetensors`);
        let bytes = 0;
        for (const n of f.names()) bytes += f.getRaw(n).byteLength;
        expect(bytes, `seed ${seed}`).toBeLessThanOrEqual(m.length); // tensors tile the data section
        outcome = 'parsed';
      } catch (e) {
        outcome = classify(e, [SafetensorsError], 200_000 + seed);
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    console.log('safetensors mutations:', Object.fromEntries(outcomes));
    expect(outcomes.get('SafetensorsError')).toBeGreaterThan(CASES / 2);
  });
});
