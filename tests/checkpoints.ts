/**
 * Writers for PyTorch-style checkpoints in tests and probes: a STORED zip (local headers, central
 * directory, end record), a pickle of the opcodes torch.save emits, and the hostile files of
 * issue 11 (each builder returns the bytes of a complete .pt file).
 *
 * Byte buffers grow by doubling, so a multi-megabyte pickle or zip is built in linear time.
 */
import { crc32 } from '../src/convert/zip.js';

const enc = new TextEncoder();

/** A growable byte buffer. */
export class Bytes {
  private buf = new Uint8Array(256);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
  }
  push(...bytes: number[]): this {
    this.reserve(bytes.length);
    for (const b of bytes) this.buf[this.length++] = b;
    return this;
  }
  append(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }
  /** `bytes` repeated `n` times. */
  repeat(bytes: Uint8Array | number[], n: number): this {
    const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    this.reserve(b.length * n);
    for (let i = 0; i < n; i++) { this.buf.set(b, this.length); this.length += b.length; }
    return this;
  }
  u16(n: number): this { return this.push(n & 0xff, (n >>> 8) & 0xff); }
  u32(n: number): this { return this.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff); }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

const crcs = new WeakMap<Uint8Array, number>();
/** crc32, remembered per array (a fuzz test re-zips the same storages hundreds of times). */
function cachedCrc(data: Uint8Array): number {
  let c = crcs.get(data);
  if (c === undefined) { c = crc32(data); crcs.set(data, c); }
  return c;
}

/** A STORED zip of these entries, as torch.save lays it out (no data descriptors, no ZIP64). */
export function makeZip(entries: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const names = entries.map(([name]) => enc.encode(name));
  const dataBytes = entries.reduce((a, [, d]) => a + d.length, 0);
  const nameBytes = names.reduce((a, n) => a + n.length, 0);
  const cdSize = 46 * entries.length + nameBytes;
  const cdOffset = 30 * entries.length + nameBytes + dataBytes;
  const out = new Uint8Array(cdOffset + cdSize + 22);
  const dv = new DataView(out.buffer);
  let p = 0;
  let q = cdOffset;
  entries.forEach(([, data], i) => {
    const nb = names[i]!;
    const common = (at: number) => { // version, flags, method, time/date, crc, sizes, name length, extra length
      dv.setUint16(at, 20, true);
      dv.setUint32(at + 10, cachedCrc(data), true);
      dv.setUint32(at + 14, data.length, true);
      dv.setUint32(at + 18, data.length, true);
      dv.setUint16(at + 22, nb.length, true);
    };
    dv.setUint32(q, 0x02014b50, true);
    dv.setUint16(q + 4, 20, true);
    common(q + 6);
    dv.setUint32(q + 42, p, true);
    out.set(nb, q + 46);
    q += 46 + nb.length;
    dv.setUint32(p, 0x04034b50, true);
    common(p + 4);
    out.set(nb, p + 30);
    out.set(data, p + 30 + nb.length);
    p += 30 + nb.length + data.length;
  });
  dv.setUint32(q, 0x06054b50, true);
  dv.setUint16(q + 8, entries.length, true);
  dv.setUint16(q + 10, entries.length, true);
  dv.setUint32(q + 12, cdSize, true);
  dv.setUint32(q + 16, cdOffset, true);
  return out;
}

/** A checkpoint zip: archive/data.pkl, archive/data/<key> for each storage, archive/version, extras. */
export const checkpointZip = (pkl: Uint8Array, storages: Record<string, Uint8Array> = {},
  extra: [string, Uint8Array][] = []): Uint8Array =>
  makeZip([['archive/data.pkl', pkl],
    ...Object.entries(storages).map(([k, v]) => [`archive/data/${k}`, v] as [string, Uint8Array]),
    ['archive/version', enc.encode('3\n')], ...extra]);

/** The entries of a STORED zip made by torch.save (or `makeZip`), by name; data are views. */
export function zipEntries(zip: Uint8Array): [string, Uint8Array][] {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = zip.length - 22;
  while (eocd >= 0 && dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || p === 0xffffffff) { // ZIP64 (torch writes it): the record its locator points at
    const rec = Number(dv.getBigUint64(eocd - 20 + 8, true));
    count = Number(dv.getBigUint64(rec + 32, true));
    p = Number(dv.getBigUint64(rec + 48, true));
  }
  const out: [string, Uint8Array][] = [];
  for (let i = 0; i < count; i++) {
    const nameLen = dv.getUint16(p + 28, true);
    const name = new TextDecoder().decode(zip.subarray(p + 46, p + 46 + nameLen));
    const size = dv.getUint32(p + 20, true);
    const h = dv.getUint32(p + 42, true);
    const start = h + 30 + dv.getUint16(h + 26, true) + dv.getUint16(h + 28, true);
    out.push([name, zip.subarray(start, start + size)]);
    p += 46 + nameLen + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  }
  return out;
}

/** A pickle writer: the opcodes torch.save emits, and any others a test wants (`op`). */
export class Pickle {
  readonly b = new Bytes().push(0x80, 2); // PROTO 2
  op(...bytes: number[]): this { this.b.push(...bytes); return this; }
  str(s: string): this { const u = enc.encode(s); this.b.push(0x58).u32(u.length).append(u); return this; } // BINUNICODE
  int(n: number): this { return n >= 0 && n < 256 ? this.op(0x4b, n) : this.op(0x4a).u32(n); } // BININT1 / BININT
  u32(n: number): this { this.b.u32(n); return this; }
  global(module: string, name: string): this { this.b.push(0x63).append(enc.encode(`${module}\n${name}\n`)); return this; }
  ints(xs: number[]): this { this.op(0x28); xs.forEach((x) => this.int(x)); return this.op(0x74); } // MARK ... TUPLE
  put(i: number): this { return this.op(0x71, i); } // BINPUT
  get(i: number): this { return this.op(0x68, i); } // BINGET
  /** _rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
  tensor(cls: string, key: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    this.op(0x28).str('storage').global('torch', cls).str(key).str('cpu').int(numel).op(0x74, 0x51); // TUPLE BINPERSID
    this.int(offset).ints(size).ints(stride).op(0x89); // NEWFALSE
    return this.global('collections', 'OrderedDict').op(0x29, 0x52, 0x74, 0x52); // EMPTY_TUPLE REDUCE TUPLE REDUCE
  }
  bytes(): Uint8Array { return this.b.push(0x2e).bytes(); } // STOP
}

// ------------------------------------------------------------------------------------------------
// hostile files (issue 11)
// ------------------------------------------------------------------------------------------------

/**
 * A pickle of about `bytes` bytes that is one LONG4 integer (all 0x7f bytes, so no shorter form
 * exists), followed by a small valid state dict: decoding the integer naively costs time
 * quadratic in its length.
 */
export function long4Checkpoint(bytes: number): Uint8Array {
  const p = new Pickle().op(0x8b).u32(bytes);
  p.b.repeat([0x7f], bytes);
  p.op(0x30); // POP
  p.op(0x7d).str('w').tensor('FloatStorage', '0', 4, 0, [4], [1]).op(0x73);
  return checkpointZip(p.bytes(), { 0: new Uint8Array(16) });
}

/** `count` repetitions of one container opcode ('}' EMPTY_DICT by default) and nothing else. */
export function containerOpsCheckpoint(count: number, op = 0x7d): Uint8Array {
  const p = new Pickle();
  p.b.repeat([op], count);
  return checkpointZip(p.bytes(), {});
}

/** One 16-byte storage viewed `tensors` times as [rows, cols] with strides [0, 0]. */
export function strideZeroCheckpoint(rows: number, cols: number, tensors = 1): Uint8Array {
  const p = new Pickle().op(0x7d, 0x28);
  for (let i = 0; i < tensors; i++) p.str(`w${i}`).tensor('FloatStorage', '0', 4, 0, [rows, cols], [0, 0]);
  return checkpointZip(p.op(0x75).bytes(), { 0: new Uint8Array(16) });
}

/** One storage of `numel` floats, viewed whole `tensors` times (aliases of one another). */
export function aliasedCheckpoint(numel: number, tensors: number): Uint8Array {
  const p = new Pickle().op(0x7d, 0x28);
  for (let i = 0; i < tensors; i++) p.str(`w${i}`).tensor('FloatStorage', '0', numel, 0, [numel], [1]);
  return checkpointZip(p.op(0x75).bytes(), { 0: new Uint8Array(numel * 4) });
}

/** A state dict whose one tensor's key is a list nested `depth` deep: MARK x depth, EMPTY_LIST, LIST x depth. */
export function nestedKeyCheckpoint(depth: number): Uint8Array {
  const p = new Pickle().op(0x7d);
  p.b.repeat([0x28], depth);
  p.op(0x5d);
  p.b.repeat([0x6c], depth);
  p.tensor('FloatStorage', '0', 4, 0, [4], [1]).op(0x73);
  return checkpointZip(p.bytes(), { 0: new Uint8Array(16) });
}

/** A state dict whose one tensor's key is a list containing itself (EMPTY_LIST DUP APPEND). */
export function cyclicKeyCheckpoint(): Uint8Array {
  const p = new Pickle().op(0x7d).op(0x5d, 0x32, 0x61).tensor('FloatStorage', '0', 4, 0, [4], [1]).op(0x73);
  return checkpointZip(p.bytes(), { 0: new Uint8Array(16) });
}

/** A list that contains itself: EMPTY_LIST DUP APPEND, used as a persistent id (so it is described in the error). */
export function cyclicPersistentIdPickle(): Uint8Array {
  return new Pickle().op(0x5d, 0x32, 0x61).op(0x51).bytes(); // EMPTY_LIST DUP APPEND BINPERSID
}

/** A tuple nested `depth` deep ((((...),),),) used as a persistent id. */
export function deepPersistentIdPickle(depth: number): Uint8Array {
  const p = new Pickle().op(0x29); // EMPTY_TUPLE
  for (let i = 0; i < depth; i++) p.op(0x85); // TUPLE1
  return p.op(0x51).bytes(); // BINPERSID
}

/** A state dict holding a list of `items` Nones built by one APPENDS (not a tensor, so skipped), and one tensor. */
export function appendsCheckpoint(items: number): Uint8Array {
  const p = new Pickle().op(0x7d).str('x').op(0x5d, 0x28);
  p.b.repeat([0x4e], items); // NONE
  p.op(0x65, 0x73); // APPENDS SETITEM
  p.str('w').tensor('FloatStorage', '0', 4, 0, [4], [1]).op(0x73);
  return checkpointZip(p.bytes(), { 0: new Uint8Array(16) });
}

/** A storage class named `name` (e.g. 'constructor', '__proto__') in an otherwise valid tensor. */
export function storageClassCheckpoint(name: string): Uint8Array {
  const p = new Pickle().op(0x7d).str('w').tensor(name, '0', 4, 0, [4], [1]).op(0x73);
  return checkpointZip(p.bytes(), { 0: new Uint8Array(16) });
}

/** Tensors named by `keys` (strings, or ints written as BININT1), each a 4-float view of one storage. */
export function namedTensorsCheckpoint(keys: (string | number)[]): Uint8Array {
  const p = new Pickle().op(0x7d, 0x28);
  for (const k of keys) {
    if (typeof k === 'string') p.str(k); else p.int(k);
    p.tensor('FloatStorage', '0', 4, 0, [4], [1]);
  }
  return checkpointZip(p.op(0x75).bytes(), { 0: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) });
}

/** The tiny checkpoint with the extra length of its first central-directory entry set to `extraLen`. */
export function withCentralExtraLength(zip: Uint8Array, extraLen: number): Uint8Array {
  const out = zip.slice();
  const dv = new DataView(out.buffer);
  let eocd = out.length - 22;
  while (dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let cd = dv.getUint32(eocd + 16, true);
  if (cd === 0xffffffff) cd = Number(dv.getBigUint64(Number(dv.getBigUint64(eocd - 20 + 8, true)) + 48, true));
  dv.setUint16(cd + 30, extraLen, true);
  return out;
}

/** A pickle prefix pushing a tuple of `rank` ones into memo slot 1 (MARK, BININT1 1 x rank, TUPLE, BINPUT 1, POP). */
function sharedOnes(rank: number): Pickle {
  const p = new Pickle().op(0x28);
  p.b.repeat([0x4b, 1], rank);
  return p.op(0x74).put(1).op(0x30);
}

/** `tensors` tensors whose size and stride are one memoised tuple of `rank` ones (fetched with BINGET). */
export function sharedShapeCheckpoint(rank: number, tensors: number): Uint8Array {
  const p = sharedOnes(rank).op(0x7d, 0x28);
  for (let t = 0; t < tensors; t++) {
    p.str(`w${t}`).global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    p.op(0x28).str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(4).op(0x74, 0x51);
    p.int(0).get(1).get(1).op(0x89).global('collections', 'OrderedDict').op(0x29, 0x52, 0x74, 0x52);
  }
  return checkpointZip(p.op(0x75).bytes(), { 0: new Uint8Array(16) });
}

/** One tensor of rank `rank` (all ones), memoised and given under `keys` names. */
export function sharedTensorCheckpoint(rank: number, keys: number): Uint8Array {
  const p = sharedOnes(rank).op(0x7d, 0x28);
  p.str('w').global('torch._utils', '_rebuild_tensor_v2').op(0x28);
  p.op(0x28).str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(4).op(0x74, 0x51);
  p.int(0).get(1).get(1).op(0x89).global('collections', 'OrderedDict').op(0x29, 0x52, 0x74, 0x52).put(2);
  for (let k = 0; k < keys; k++) p.str(`k${k}`).get(2);
  return checkpointZip(p.op(0x75).bytes(), { 0: new Uint8Array(16) });
}
