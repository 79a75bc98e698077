import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f32ToF16Array } from '../src/gpu/half.js';
import {
  parseSafetensors, readSafetensorsFile, SafetensorsError, writeSafetensors,
} from '../src/io/safetensors.js';

const GOLDEN = '/work/shared/golden';

/** A file whose header is the given JSON text (space-padded) followed by `data`. */
function rawFile(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const hb = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

const expectError = (bytes: Uint8Array, pattern: RegExp, name = 'bad.safetensors') => {
  let err: unknown = null;
  try {
    parseSafetensors(bytes, name);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SafetensorsError);
  const msg = (err as Error).message;
  expect(msg).toContain(name);
  expect(msg).toMatch(pattern);
  return msg;
};

describe('safetensors: round trip', () => {
  it('reads F32, F16, BF16, integer and bool tensors and the metadata', () => {
    const f32 = new Float32Array([1.5, -2.25, 3e-5, 1e30, -0, 7]);
    const f16vals = new Float32Array([0.5, -1, 65504, 6.103515625e-5, 5.960464477539063e-8, 0.333251953125]);
    const bf16words = new Uint16Array([0x3f80, 0xc040, 0x4049, 0x0000]); // 1, -3, 3.140625, 0
    const bytes = writeSafetensors({
      odd: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 255]) }, // makes later offsets unaligned
      a: { dtype: 'F32', shape: [2, 3], data: f32 },
      h: { dtype: 'F16', shape: [3, 2], data: f32ToF16Array(f16vals) },
      b: { dtype: 'BF16', shape: [4], data: bf16words },
      i: { dtype: 'I32', shape: [2], data: new Int32Array([-7, 123456]) },
      l: { dtype: 'I64', shape: [2], data: new BigInt64Array([-5n, 1n << 40n]) },
      d: { dtype: 'F64', shape: [1, 1], data: new Float64Array([0.1]) },
      m: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
      e: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    }, { format: 'pt', note: 'hello' });
    const f = parseSafetensors(bytes, 'round.safetensors');
    expect(f.metadata).toEqual({ format: 'pt', note: 'hello' });
    expect(f.names()).toEqual(['odd', 'a', 'h', 'b', 'i', 'l', 'd', 'm', 'e']);
    expect(f.has('a')).toBe(true);
    expect(f.has('zz')).toBe(false);
    expect(f.info('h')).toMatchObject({ dtype: 'F16', shape: [3, 2] });
    expect([...f.getF32('a')]).toEqual([...f32]);
    expect(f.getRaw('a')).toBeInstanceOf(Float32Array);
    expect([...f.getF32('h')]).toEqual([...f16vals]);
    expect(f.getRaw('h')).toBeInstanceOf(Uint16Array);
    expect([...f.getRaw('h')]).toEqual([...f32ToF16Array(f16vals)]);
    expect([...f.getF32('b')]).toEqual([1, -3, 3.140625, 0]);
    expect([...(f.getRaw('b') as Uint16Array)]).toEqual([...bf16words]);
    expect([...f.getF32('i')]).toEqual([-7, 123456]);
    expect([...(f.getRaw('l') as BigInt64Array)]).toEqual([-5n, 1n << 40n]);
    expect([...f.getF32('l')]).toEqual([-5, 2 ** 40]);
    expect(f.getF32('d')[0]).toBeCloseTo(0.1, 7);
    expect([...f.getRaw('m')]).toEqual([1, 0]);
    expect([...f.getRaw('odd')]).toEqual([1, 2, 255]);
    expect(f.getF32('e').length).toBe(0);
    expect(() => f.info('zz')).toThrow(/round\.safetensors.*no tensor named "zz"/);
  });

  it('accepts a Uint8Array that is a window into a larger buffer', () => {
    const inner = writeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float32Array([4, 5]) } });
    const big = new Uint8Array(inner.length + 5);
    big.set(inner, 5);
    const f = parseSafetensors(big.subarray(5), 'window');
    expect([...f.getF32('x')]).toEqual([4, 5]);
  });
});

describe('safetensors: damaged files are rejected with the problem and the file named', () => {
  const real = new Uint8Array(readFileSync(`${GOLDEN}/tiny/weights.safetensors`));
  const headerLen = Number(new DataView(real.buffer, real.byteOffset).getBigUint64(0, true));

  it('a file shorter than 8 bytes', () => {
    expectError(real.subarray(0, 5), /shorter than the 8-byte header length/);
    expectError(new Uint8Array(0), /0 bytes, shorter/);
  });

  it('truncated inside the header', () => {
    for (const cut of [8, 100, 8 + headerLen - 1]) {
      expectError(real.subarray(0, cut), new RegExp(`truncated: the header says it is ${headerLen} bytes.*${8 + headerLen - cut} bytes missing`));
    }
  });

  it('truncated inside the data, with the number of missing bytes', () => {
    for (const cut of [8 + headerLen, 8 + headerLen + 1000, Math.floor(real.length / 2), real.length - 1]) {
      expectError(real.subarray(0, cut), new RegExp(`truncated:.* \\(${real.length - cut} bytes missing`));
    }
  });

  it('a header length far beyond any file', () => {
    const b = real.slice(0, 64);
    new DataView(b.buffer).setBigUint64(0, 0x4f4c4c4548n, true); // e.g. text where a length should be
    expectError(b, /header length \d+ is larger than the format's limit/);
  });

  it('a header that is not JSON, or not an object', () => {
    expectError(rawFile('{"a": {"dtype": "F32", '), /header is not valid JSON/);
    expectError(rawFile('\u0000\u0001garbage'), /header is not valid JSON/);
    expectError(rawFile('[1, 2, 3]'), /header is not a JSON object \(found an array\)/);
    expectError(rawFile('42'), /header is not a JSON object \(found number\)/);
    const bad = rawFile('{}');
    bad[9] = 0xff; // invalid UTF-8
    expectError(bad, /header is not valid UTF-8/);
    expectError(rawFile('{"__metadata__": {"a": 1}}'), /"__metadata__"."a" is not a string/);
  });

  it('an entry missing dtype, shape or data_offsets', () => {
    expectError(rawFile('{"w": {"shape": [1], "data_offsets": [0, 4]}}', new Uint8Array(4)), /tensor "w": entry has no "dtype"/);
    expectError(rawFile('{"w": {"dtype": "F32", "data_offsets": [0, 4]}}', new Uint8Array(4)), /tensor "w": entry has no "shape"/);
    expectError(rawFile('{"w": {"dtype": "F32", "shape": [1]}}', new Uint8Array(4)), /tensor "w": entry has no "data_offsets"/);
    expectError(rawFile('{"w": 5}'), /tensor "w": entry is not an object/);
    expectError(rawFile('{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', new Uint8Array(4)), /shape \[-1\] is not a list/);
    expectError(rawFile('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}}', new Uint8Array(4)), /data_offsets \[4\] is not a pair/);
  });

  it('an unknown dtype', () => {
    expectError(rawFile('{"w": {"dtype": "F17", "shape": [1], "data_offsets": [0, 4]}}', new Uint8Array(4)), /tensor "w": unknown dtype "F17"/);
  });

  it('a byte length that does not match the shape and dtype', () => {
    expectError(rawFile('{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}', new Uint8Array(20)),
      /tensor "w": wrong byte length: .* hold 20 bytes, but F32 \[2, 3\] needs 6 x 4 = 24/);
    expectError(rawFile('{"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 12]}}', new Uint8Array(12)), /wrong byte length/);
  });

  it('overlapping offsets, gaps, and uncovered trailing bytes', () => {
    expectError(rawFile('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}', new Uint8Array(12)),
      /overlapping offsets: tensor "b" \[4, 12\] overlaps tensor "a"/);
    expectError(rawFile('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', new Uint8Array(4)),
      /overlapping offsets/);
    expectError(rawFile('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}', new Uint8Array(12)),
      /gap in the data section: bytes \[4, 8\) belong to no tensor/);
    expectError(rawFile('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', new Uint8Array(10)),
      /gap in the data section: 6 bytes after the last tensor/);
    expectError(rawFile('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}', new Uint8Array(8)), /end before they begin/);
  });

  it('out-of-order entries in the header are fine when the offsets tile the data', () => {
    const f = parseSafetensors(rawFile('{"b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}',
      new Uint8Array([9, 8, 7])));
    expect(f.names()).toEqual(['a', 'b']);
    expect([...f.getRaw('b')]).toEqual([8, 7]);
  });

  it('readSafetensorsFile names the path', async () => {
    await expect(readSafetensorsFile('/nonexistent/x.safetensors')).rejects.toThrow(/x\.safetensors/);
  });
});

describe('safetensors: the golden cases', () => {
  for (const c of ['tiny', 'tiny_pool1', 'tiny_pool2', 'ti512']) {
    it(`parses ${c}'s weights and tensors`, async () => {
      const w = await readSafetensorsFile(`${GOLDEN}/${c}/weights.safetensors`);
      const t = await readSafetensorsFile(`${GOLDEN}/${c}/tensors.safetensors`);
      expect(w.metadata['case']).toBe(c);
      expect(t.metadata['case']).toBe(c);
      const wd = new Set(w.names().map((n) => w.info(n).dtype));
      expect([...wd]).toEqual([c === 'ti512' ? 'F16' : 'F32']);
      let count = 0;
      for (const n of w.names()) {
        const v = w.getF32(n);
        expect(v.length).toBe(w.info(n).shape.reduce((a, b) => a * b, 1));
        for (const x of v) if (!Number.isFinite(x)) throw new Error(`${c}: ${n} has ${x}`);
        count += v.length;
      }
      expect(count).toBeGreaterThan(0);
      for (const n of t.names()) {
        const dt = t.info(n).dtype;
        expect(['F32', 'U8']).toContain(dt);
        if (dt === 'U8') expect(n.endsWith('masks_bits')).toBe(true);
        expect(t.getRaw(n).length).toBe(t.info(n).shape.reduce((a, b) => a * b, 1));
      }
      expect(JSON.parse(t.metadata['script']!)).toBeInstanceOf(Array);
    });
  }

  it('reads values that match an independent reader', async () => {
    // Values printed by Python's struct module from the same files.
    const ti = await readSafetensorsFile(`${GOLDEN}/ti512/weights.safetensors`);
    const pe = ti.getF32('sam_prompt_encoder.point_embeddings.3.weight');
    expect([...pe.subarray(0, 4)]).toEqual([-0.05908203125, 0.06146240234375, -0.0189361572265625, -0.006168365478515625]);
    expect(pe.reduce((a, b) => a + b, 0)).toBeCloseTo(1.4726204872131348, 4);
    const tiny = await readSafetensorsFile(`${GOLDEN}/tiny/weights.safetensors`);
    expect([...tiny.getF32('sam_prompt_encoder.point_embeddings.3.weight').subarray(0, 2)])
      .toEqual([Math.fround(0.055736884474754333), Math.fround(0.08389630913734436)]);
    const tt = await readSafetensorsFile(`${GOLDEN}/tiny/tensors.safetensors`);
    const bits = tt.getRaw('prompt.point.masks_bits') as Uint8Array;
    expect([...bits.subarray(0, 4)]).toEqual([255, 255, 255, 248]);
    expect(bits.reduce((a, b) => a + b, 0)).toBe(15245456);
  });
});
