import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CheckpointError, convertCheckpoint, convertFile, readCheckpoint } from '../src/convert/convert.js';
import { PickleError } from '../src/convert/pickle.js';
import { ZipError } from '../src/convert/zip.js';
import { f16ToF32, f32ToF16Array } from '../src/gpu/half.js';
import { parseSafetensors, readSafetensorsFile } from '../src/io/safetensors.js';
import { checkpointZip, makeZip, Pickle } from './checkpoints.js';
import { errorOf } from './helpers.js';

const TINY = '/work/shared/golden/tiny';
const tinyPt = () => new Uint8Array(readFileSync(`${TINY}/checkpoint.pt`));
const enc = new TextEncoder();

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('convert: the tiny golden checkpoint', () => {
  it('gives exactly the tensors of weights.safetensors', async () => {
    const golden = await readSafetensorsFile(`${TINY}/weights.safetensors`);
    const t0 = performance.now();
    const out = parseSafetensors(convertCheckpoint(tinyPt(), { source: 'checkpoint.pt' }));
    const ms = performance.now() - t0;
    console.log(`tiny checkpoint: converted in ${ms.toFixed(0)} ms, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
    expect(out.metadata).toEqual({ format: 'pt' });
    expect([...out.names()].sort()).toEqual([...golden.names()].sort());
    for (const name of golden.names()) {
      const a = out.info(name);
      const b = golden.info(name);
      expect(a.dtype, name).toBe(b.dtype);
      expect(a.shape, name).toEqual(b.shape);
      expect(Buffer.from(bytesOf(out.getRaw(name))).equals(Buffer.from(bytesOf(golden.getRaw(name)))), name).toBe(true);
    }
  });

  it('--f16 gives F16 tensors equal to rounding the f32 values (to nearest even)', async () => {
    const golden = await readSafetensorsFile(`${TINY}/weights.safetensors`);
    const out = parseSafetensors(convertCheckpoint(tinyPt(), { f16: true }));
    for (const name of golden.names()) {
      expect(out.info(name).dtype).toBe('F16');
      expect(out.info(name).shape).toEqual(golden.info(name).shape);
      const want = f32ToF16Array(golden.getF32(name));
      expect(Buffer.from(bytesOf(out.getRaw(name))).equals(Buffer.from(bytesOf(want))), name).toBe(true);
    }
    // spot-check the rounding itself: 1 + 2^-11 is a tie between 1 and 1 + 2^-10, and goes to the even 1
    expect(f16ToF32(f32ToF16Array(new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11]))[0]!)).toBe(1);
  });

  it('convertFile converts a Blob (the browser path)', async () => {
    const blob = await convertFile(new Blob([tinyPt()]));
    const out = parseSafetensors(await blob.arrayBuffer());
    expect(out.names().length).toBe(307);
  });

  it('reports progress for every tensor', () => {
    const seen: number[] = [];
    readCheckpoint(tinyPt(), { onProgress: (done, total) => { seen.push(done); expect(total).toBe(307); } });
    expect(seen.length).toBe(307);
  });
});

describe('convert: views with storage offsets and strides', () => {
  const storage = Float32Array.from({ length: 20 }, (_, i) => i * 1.5 - 7);
  // Reference: out[i0, i1, ...] = storage[offset + sum_d i_d * stride[d]]
  function view<T>(src: ArrayLike<T>, offset: number, shape: number[], stride: number[]): T[] {
    const out: T[] = [];
    const walk = (d: number, base: number) => {
      if (d === shape.length) { out.push(src[base]!); return; }
      for (let i = 0; i < shape[d]!; i++) walk(d + 1, base + i * stride[d]!);
    };
    walk(0, offset);
    return out;
  }
  const longs = BigInt64Array.from([-3n, 2n ** 40n + 7n, 5n, -(2n ** 50n), 9n, 11n, 0n]);
  const halves = Uint16Array.from({ length: 9 }, (_, i) => 0x3c00 + i * 17);

  // {"model": OrderedDict(...)} with `_metadata` set by BUILD, memoised globals and a Parameter
  const pk = new Pickle()
    .op(0x7d).put(0).str('model')
    .global('collections', 'OrderedDict').put(1).op(0x29, 0x52).put(2) // OrderedDict()
    .op(0x28) // MARK for SETITEMS
    .str('transposed').tensor('FloatStorage', '0', 20, 2, [3, 4], [1, 3])
    .str('expanded').tensor('FloatStorage', '0', 20, 5, [2, 3], [0, 1])
    .str('scalar').tensor('FloatStorage', '0', 20, 7, [], [])
    .str('permuted3d').tensor('FloatStorage', '0', 20, 1, [2, 2, 3], [1, 6, 2])
    .str('param').global('torch._utils', '_rebuild_parameter').op(0x28)
    .tensor('FloatStorage', '0', 20, 3, [2, 2], [2, 1]).op(0x88).get(1).op(0x29, 0x52, 0x74, 0x52)
    .str('long_t').tensor('LongStorage', '1', 7, 1, [2, 3], [1, 2])
    .str('half_t').tensor('HalfStorage', '2', 9, 0, [3, 3], [1, 3])
    .op(0x75) // SETITEMS
    .op(0x7d).str('_metadata').get(1).op(0x29, 0x52).op(0x73, 0x62) // {'_metadata': OrderedDict()} BUILD
    .op(0x73); // SETITEM model
  const storages = { 0: bytesOf(storage), 1: bytesOf(longs), 2: bytesOf(halves) };
  const expected = {
    transposed: { dtype: 'F32', shape: [3, 4], data: view(storage, 2, [3, 4], [1, 3]) },
    expanded: { dtype: 'F32', shape: [2, 3], data: view(storage, 5, [2, 3], [0, 1]) },
    scalar: { dtype: 'F32', shape: [], data: [storage[7]] },
    permuted3d: { dtype: 'F32', shape: [2, 2, 3], data: view(storage, 1, [2, 2, 3], [1, 6, 2]) },
    param: { dtype: 'F32', shape: [2, 2], data: view(storage, 3, [2, 2], [2, 1]) },
    long_t: { dtype: 'I64', shape: [2, 3], data: view(longs, 1, [2, 3], [1, 2]) },
    half_t: { dtype: 'F16', shape: [3, 3], data: view(halves, 0, [3, 3], [1, 3]) },
  };

  function check(bytes: Uint8Array) {
    const got = readCheckpoint(bytes);
    expect([...got.keys()]).toEqual(Object.keys(expected));
    for (const [name, e] of Object.entries(expected)) {
      const t = got.get(name)!;
      expect({ dtype: t.dtype, shape: t.shape, data: [...t.data] }, name).toEqual(e);
    }
  }

  it('materialises transposed, expanded, permuted, scalar, Parameter, int64 and f16 views', () => {
    check(checkpointZip(pk.bytes(), storages));
  });

  it('honours byteorder "big"', () => {
    const swapped = Object.fromEntries(Object.entries(storages).map(([k, v]) => {
      const size = k === '0' ? 4 : k === '1' ? 8 : 2;
      const b = v.slice();
      for (let i = 0; i < b.length; i += size) b.subarray(i, i + size).reverse();
      return [k, b];
    }));
    check(checkpointZip(pk.bytes(), swapped, [['archive/byteorder', enc.encode('big')]]));
  });

  it('writes the materialised views to safetensors, with --f16 rounding floats and keeping int64', () => {
    const st = parseSafetensors(convertCheckpoint(checkpointZip(pk.bytes(), storages), { f16: true }));
    expect(st.info('long_t').dtype).toBe('I64');
    expect([...st.getRaw('long_t')]).toEqual(expected.long_t.data);
    expect(st.info('transposed').dtype).toBe('F16');
    expect(st.getRaw('transposed')).toEqual(f32ToF16Array(Float32Array.from(expected.transposed.data)));
    expect([...st.getRaw('half_t')]).toEqual(expected.half_t.data);
  });

  it('rejects a view that runs past its storage', () => {
    const bad = new Pickle().op(0x7d).str('w').tensor('FloatStorage', '0', 20, 10, [4, 4], [1, 3]).op(0x73).bytes();
    const err = errorOf(() => readCheckpoint(checkpointZip(bad, storages)));
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.message).toMatch(/tensor "w".*reaches element 22 of a storage of 20 elements/);
  });
});

describe('convert: refuses malicious pickles without running anything', () => {
  const marker = `/tmp/etam-convert-pwned-${process.pid}`;
  const attacks: [string, Pickle][] = [
    ['os.system', new Pickle().global('os', 'system').str(`touch ${marker}`).op(0x85, 0x52)],
    ['posix.system', new Pickle().global('posix', 'system').str(`touch ${marker}`).op(0x85, 0x52)],
    ['builtins.eval', new Pickle().global('builtins', 'eval').str('1+1').op(0x85, 0x52)],
    ['subprocess.Popen', new Pickle().str('subprocess').str('Popen').op(0x93).str('true').op(0x85, 0x52)], // STACK_GLOBAL
    // hidden inside an otherwise valid state dict, after a real tensor
    ['builtins.getattr', new Pickle().op(0x7d, 0x28).str('w').tensor('FloatStorage', '0', 1, 0, [1], [1])
      .str('x').global('builtins', 'getattr').op(0x75)],
  ];
  for (const [name, pkl] of attacks) {
    it(`refuses ${name}`, () => {
      const err = errorOf(() => readCheckpoint(checkpointZip(pkl.bytes(), { 0: new Uint8Array(4) })));
      expect(err).toBeInstanceOf(PickleError);
      expect(err.message).toContain(`"${name}"`);
      expect(err.message).toContain('only tensors and state-dict containers are accepted');
      expect(existsSync(marker)).toBe(false);
    });
  }

  it('refuses to call a storage class or anything not whitelisted as callable', () => {
    const pkl = new Pickle().global('torch', 'FloatStorage').op(0x29, 0x52).bytes();
    expect(errorOf(() => readCheckpoint(checkpointZip(pkl))).message).toMatch(/REDUCE on torch\.FloatStorage, which is not callable/);
  });

  it('refuses unknown opcodes', () => {
    const pkl = new Pickle().op(0x69 /* INST */).bytes();
    expect(errorOf(() => readCheckpoint(checkpointZip(pkl))).message).toMatch(/unsupported pickle opcode 0x69/);
  });
});

describe('convert: truncated and corrupt files', () => {
  const full = tinyPt();
  const cuts = [0, 3, 100, 40_000, full.length >> 1, full.length - 30_000, full.length - 100, full.length - 40, full.length - 1];
  for (const cut of cuts) {
    it(`a file cut to ${cut} bytes is reported as truncated`, () => {
      const err = errorOf(() => readCheckpoint(full.subarray(0, cut), { source: 'cut.pt' }));
      expect(err).toBeInstanceOf(ZipError);
      expect(err.message).toMatch(/^cut\.pt: /);
      expect(err.message).toMatch(cut < 4 ? /truncated/ : /truncated or corrupt: the end of central directory record is missing/);
    });
  }

  it('a file with bytes cut out of the middle names the missing bytes before the central directory', () => {
    const holed = new Uint8Array(full.length - 500);
    holed.set(full.subarray(0, 1_000_000));
    holed.set(full.subarray(1_000_500), 1_000_000);
    expect(errorOf(() => readCheckpoint(holed)).message).toMatch(/500 bytes are missing before it/);
  });

  it('an entry whose data runs past the central directory is reported', () => {
    const zip = makeZip([['archive/data.pkl', new Pickle().op(0x7d).bytes()]]);
    // claim a larger compressed size in the central directory header (at offset 20 of it)
    const dv = new DataView(zip.buffer);
    const cd = dv.getUint32(zip.length - 6, true);
    dv.setUint32(cd + 20, 1000, true);
    expect(errorOf(() => readCheckpoint(zip)).message).toMatch(/data of entry "archive\/data\.pkl" should span .* past the start of the central directory/);
  });

  it('a flipped byte in a storage fails the CRC check', () => {
    const bad = full.slice();
    bad[1_000_000]! ^= 0x40;
    expect(errorOf(() => readCheckpoint(bad)).message).toMatch(/corrupt: the data of entry "checkpoint\/data\/\d+" fails its CRC-32 check/);
  });

  it('a truncated pickle or a missing storage is reported', () => {
    const pkl = new Pickle().op(0x7d).str('w').tensor('FloatStorage', '0', 1, 0, [1], [1]).op(0x73).bytes();
    for (const cut of [0, 1, 2, 40, 60, 100, pkl.length - 1]) {
      expect(errorOf(() => readCheckpoint(checkpointZip(pkl.subarray(0, cut)))).message)
        .toMatch(/archive\/data\.pkl: truncated or corrupt: the pickle ends before its STOP opcode/);
    }
    expect(errorOf(() => readCheckpoint(checkpointZip(pkl))).message)
      .toMatch(/the storage of tensor "w" \(entry "archive\/data\/0"\) is missing/);
  });

  it('a zip that is not a checkpoint, and a non-zip, are named as such', () => {
    expect(errorOf(() => readCheckpoint(makeZip([['a.txt', enc.encode('hi')]]))).message).toMatch(/no "<archive>\/data\.pkl" entry/);
    expect(errorOf(() => readCheckpoint(enc.encode('\x80\x02}q\x00.'))).message).toMatch(/not a zip file/);
  });
});
