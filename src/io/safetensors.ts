/**
 * A reader for the safetensors format, written from its specification:
 *
 *   bytes [0, 8)        N, the header length, an unsigned 64-bit little-endian integer
 *   bytes [8, 8+N)      the header, UTF-8 JSON: an object mapping each tensor name to
 *                       {dtype, shape, data_offsets: [begin, end]}, plus an optional
 *                       "__metadata__" object of string to string (it may be padded with spaces)
 *   bytes [8+N, end)    the data section; a tensor's bytes are data[begin, end), row-major,
 *                       little-endian. Tensors must cover the data section exactly: no gaps,
 *                       no overlaps.
 *
 * Works on bytes in memory (browser and Node). `readSafetensorsFile` reads a file in Node; it loads
 * node:fs through a dynamic import so this module stays usable in a browser bundle.
 *
 * Every validation error is a `SafetensorsError` whose message starts with the file's name and
 * says what is wrong.
 */
import { bf16ToF32Array, f16ToF32Array } from '../gpu/half.js';

export type SafetensorsDType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL';

const ITEM_SIZE: Readonly<Record<SafetensorsDType, number>> = Object.freeze(Object.assign(Object.create(null) as object, {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1,
}));
/** Whether a name from a file is one of the dtypes (an own key: `constructor` is not a dtype). */
const isDType = (d: unknown): d is SafetensorsDType => typeof d === 'string' && Object.hasOwn(ITEM_SIZE, d);

/** The typed array `getRaw` returns for each stored dtype (F16 and BF16 as their 16-bit words). */
export type RawArray =
  | Float64Array | Float32Array
  | BigInt64Array | BigUint64Array
  | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range inside the data section. */
  dataOffsets: [number, number];
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** A parsed safetensors file. Tensor data is read on demand from the bytes given to `parseSafetensors`. */
export interface SafetensorsFile {
  /** The name used in error messages (a path, a URL, or "<bytes>"). */
  readonly source: string;
  readonly metadata: Record<string, string>;
  /** Tensor names in the order of their data (i.e. by offset). */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /**
   * The tensor as f32, converted from any stored dtype (F16/BF16 widened exactly; F64 and 64-bit
   * integers rounded). For F32 data at an aligned offset this is a view of the file's bytes:
   * treat it as read-only.
   */
  getF32(name: string): Float32Array;
  /** The tensor in its stored dtype (a view of the file's bytes when aligned, else a copy). */
  getRaw(name: string): RawArray;
}

const HEADER_LIMIT = 100_000_000; // the format's own limit on the header size

/** The header length from the first 8 bytes (undefined when fewer have arrived); fails past the format's limit. */
function headerLength(bytes: Uint8Array, fail: (msg: string) => never): number | undefined {
  if (bytes.byteLength < 8) return undefined;
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(HEADER_LIMIT)) {
    fail(`header length ${n64} is larger than the format's limit of ${HEADER_LIMIT} bytes: not a safetensors file`);
  }
  return Number(n64);
}

/** The header's metadata and tensor entries, each entry checked on its own (not yet against the data). */
function parseHeader(headerBytes: Uint8Array, fail: (msg: string) => never): { metadata: Record<string, string>; infos: Map<string, TensorInfo> } {
  let headerText: string;
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message}); it starts with ${JSON.stringify(headerText.slice(0, 40))}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail(`header is not a JSON object (found ${Array.isArray(header) ? 'an array' : header === null ? 'null' : typeof header})`);
  }
  const entries = header as Record<string, unknown>;
  // JSON.parse keeps the last of two equal keys; a file that names a tensor twice is ambiguous.
  const dup = duplicateKey(headerText);
  if (dup !== undefined) fail(`header names ${brief(dup.key)} twice${dup.path ? ` (inside ${brief(dup.path)})` : ''}: the file is corrupt or crafted`);

  // A null-prototype record: a key such as "__proto__" is kept as a key.
  const metadata = Object.create(null) as Record<string, string>;
  if (Object.hasOwn(entries, '__metadata__')) {
    const md = entries['__metadata__'];
    if (typeof md !== 'object' || md === null || Array.isArray(md)) fail('"__metadata__" is not an object');
    for (const [k, v] of Object.entries(md as Record<string, unknown>)) {
      if (typeof v !== 'string') fail(`"__metadata__".${brief(k)} is not a string`);
      metadata[k] = v as string;
    }
  }

  const infos = new Map<string, TensorInfo>();
  for (const [name, raw] of Object.entries(entries)) {
    if (name === '__metadata__') continue;
    const where = `tensor ${brief(name)}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) { fail(`${where}: entry is not an object`); }
    const e = raw as Record<string, unknown>;
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!Object.hasOwn(e, key)) fail(`${where}: entry has no "${key}"`);
    }
    const dtype = e['dtype'];
    if (!isDType(dtype)) {
      fail(`${where}: unknown dtype ${brief(dtype)} (known: ${Object.keys(ITEM_SIZE).join(', ')})`);
    }
    const shape = e['shape'];
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: shape ${brief(shape)} is not a list of non-negative integers`);
    }
    const offs = e['data_offsets'];
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: data_offsets ${brief(offs)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    const dt = dtype as SafetensorsDType;
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = count * ITEM_SIZE[dt];
    if (end - begin !== expected) {
      fail(`${where}: wrong byte length: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, ` +
        `but ${dt} ${brief(shape)} needs ${count} x ${ITEM_SIZE[dt]} = ${expected}`);
    }
    infos.set(name, { dtype: dt, shape: [...(shape as number[])], dataOffsets: [begin, end] });
  }

  return { metadata, infos };
}

/** One past the last byte of the data section any tensor claims (0 when there are none). */
function dataEnd(infos: Map<string, TensorInfo>): { end: number; name: string } {
  let end = 0;
  let name = '';
  for (const [n, info] of infos) {
    if (info.dataOffsets[1] > end) { end = info.dataOffsets[1]; name = n; }
  }
  return { end, name };
}

/**
 * The size of the whole file as its first bytes describe it (8 + header length + the end of the
 * last tensor's data), or undefined while `prefix` is too short to hold the header. Throws the
 * SafetensorsError `parseSafetensors` would give for a bad header. For a download: it tells how
 * much to expect before the data arrives.
 */
export function safetensorsFileSize(prefix: Uint8Array, source = '<bytes>'): number | undefined {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  const headerLen = headerLength(prefix, fail);
  if (headerLen === undefined || prefix.byteLength < 8 + headerLen) return undefined;
  return 8 + headerLen + dataEnd(parseHeader(prefix.subarray(8, 8 + headerLen), fail).infos).end;
}

/**
 * Parses safetensors bytes. Everything in the header is checked up front (see the file comment),
 * so a truncated or damaged file fails here, not on the first `get`.
 */
export function parseSafetensors(input: ArrayBuffer | Uint8Array, source = '<bytes>'): SafetensorsFile {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  const headerLen = headerLength(bytes, fail);
  if (headerLen === undefined) {
    return fail(`file is ${bytes.byteLength} bytes, shorter than the 8-byte header length: not a safetensors file, or truncated`);
  }
  if (8 + headerLen > bytes.byteLength) {
    fail(`truncated: the header says it is ${headerLen} bytes, but the file is only ${bytes.byteLength} bytes ` +
      `(${8 + headerLen - bytes.byteLength} bytes missing from the header alone)`);
  }
  const { metadata, infos } = parseHeader(bytes.subarray(8, 8 + headerLen), fail);
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;

  // Truncation first (the commonest damage), reported with the number of missing bytes.
  const { end: maxEnd, name: lastName } = dataEnd(infos);
  if (maxEnd > dataLen) {
    fail(`truncated: tensor ${brief(lastName)} ends at byte ${maxEnd} of the data section, which has only ${dataLen} bytes ` +
      `(${maxEnd - dataLen} bytes missing; the file is ${bytes.byteLength} bytes, it should be ${dataStart + maxEnd})`);
  }

  // The tensors, ordered by offset, must tile [0, dataLen) exactly.
  const ordered = [...infos.entries()].sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let pos = 0;
  let prev = '';
  for (const [name, info] of ordered) {
    const [begin, end] = info.dataOffsets;
    if (begin < pos) {
      fail(`overlapping offsets: tensor ${brief(name)} [${begin}, ${end}] overlaps tensor ${brief(prev)}, which ends at ${pos}`);
    }
    if (begin > pos) {
      fail(`gap in the data section: bytes [${pos}, ${begin}) belong to no tensor ` +
        `(between ${prev ? brief(prev) : 'the start'} and ${brief(name)})`);
    }
    pos = end;
    prev = name;
  }
  if (pos !== dataLen) {
    fail(`gap in the data section: ${dataLen - pos} bytes after the last tensor (${prev ? brief(prev) : 'none'}) belong to no tensor`);
  }

  const order = ordered.map(([name]) => name);
  return new ParsedFile(source, metadata, infos, order, bytes, dataStart);
}

class ParsedFile implements SafetensorsFile {
  constructor(
    readonly source: string,
    readonly metadata: Record<string, string>,
    private readonly infos: Map<string, TensorInfo>,
    private readonly order: string[],
    private readonly bytes: Uint8Array,
    private readonly dataStart: number,
  ) {}

  names(): string[] {
    return [...this.order];
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.infos.get(name);
    if (!info) throw new SafetensorsError(`${this.source}: no tensor named ${brief(name)}`);
    return info;
  }

  getRaw(name: string): RawArray {
    const { dtype, dataOffsets: [begin, end] } = this.info(name);
    const size = ITEM_SIZE[dtype];
    const count = (end - begin) / size;
    const abs = this.bytes.byteOffset + this.dataStart + begin;
    // Typed arrays need their offset aligned to the element size; copy out when it is not.
    let buf: ArrayBufferLike = this.bytes.buffer;
    let off = abs;
    if (abs % size !== 0) {
      buf = this.bytes.slice(this.dataStart + begin, this.dataStart + end).buffer;
      off = 0;
    }
    switch (dtype) {
      case 'F64': return new Float64Array(buf, off, count);
      case 'F32': return new Float32Array(buf, off, count);
      case 'F16': case 'BF16': case 'U16': return new Uint16Array(buf, off, count);
      case 'I64': return new BigInt64Array(buf, off, count);
      case 'U64': return new BigUint64Array(buf, off, count);
      case 'I32': return new Int32Array(buf, off, count);
      case 'U32': return new Uint32Array(buf, off, count);
      case 'I16': return new Int16Array(buf, off, count);
      case 'I8': return new Int8Array(buf, off, count);
      case 'U8': case 'BOOL': return new Uint8Array(buf, off, count);
    }
  }

  getF32(name: string): Float32Array {
    const { dtype } = this.info(name);
    const raw = this.getRaw(name);
    switch (dtype) {
      case 'F32': return raw as Float32Array;
      case 'F16': return f16ToF32Array(raw as Uint16Array);
      case 'BF16': return bf16ToF32Array(raw as Uint16Array);
      case 'I64': case 'U64': {
        const big = raw as BigInt64Array | BigUint64Array;
        const out = new Float32Array(big.length);
        for (let i = 0; i < big.length; i++) out[i] = Number(big[i]!);
        return out;
      }
      default: return Float32Array.from(raw as ArrayLike<number>);
    }
  }
}

/** Bytes per element of a safetensors dtype. */
export const safetensorsItemSize = (dtype: SafetensorsDType): number => ITEM_SIZE[dtype];

/** Reads and parses a safetensors file (Node only). */
export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  // The module name is held in a variable so that browser bundlers leave it alone.
  const modName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ modName)) as typeof import('node:fs/promises');
  const buf = await fs.readFile(path);
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

/** A tensor to write with `writeSafetensors`: data in the stored dtype (F16/BF16 as 16-bit words). */
export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: RawArray;
}

/**
 * Builds a safetensors file in memory (tensors in the given order, header padded with spaces to a
 * multiple of 8 bytes). Any name but "__metadata__" (the format's own key) is written as it is,
 * "__proto__" included: give a Map to write such a name (an object literal cannot hold it).
 */
export function writeSafetensors(tensors: ReadonlyMap<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>): Uint8Array {
  const list: [string, TensorToWrite][] = tensors instanceof Map
    ? [...(tensors as ReadonlyMap<string, TensorToWrite>)] : Object.entries(tensors as Record<string, TensorToWrite>);
  const fail = (msg: string): never => {
    throw new SafetensorsError(`writeSafetensors: ${msg}`);
  };
  // A null-prototype header: "__proto__" is an ordinary key of it, and JSON.stringify writes it.
  const header = Object.create(null) as Record<string, unknown>;
  if (metadata) header['__metadata__'] = metadata;
  let pos = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') fail('a tensor cannot be named "__metadata__": the format keeps that key for its metadata');
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) fail(`${brief(name)} has ${t.data.length} values for shape [${t.shape}]`);
    const len = t.data.byteLength;
    if (len !== n * ITEM_SIZE[t.dtype]) fail(`${brief(name)}: ${t.data.constructor.name} does not hold ${t.dtype}`);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [pos, pos + len] };
    pos += len;
  }
  let text = JSON.stringify(header);
  const enc = new TextEncoder();
  while ((8 + enc.encode(text).byteLength) % 8 !== 0) text += ' ';
  const hb = enc.encode(text);
  const out = new Uint8Array(8 + hb.byteLength + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  let p = 8 + hb.byteLength;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

/** A value from a header, for a message: short JSON, cut at 80 characters. */
function brief(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? v.slice(0, 80) + '...' : v);
  if (Array.isArray(v)) {
    if (v.length > 8 || v.some((x) => typeof x === 'object' && x !== null)) return `(a list of ${v.length} items)`;
    return `[${v.map((x) => (typeof x === 'string' ? brief(x) : String(x))).join(', ')}]`;
  }
  if (typeof v === 'object' && v !== null) return '(an object)';
  return String(v);
}

/**
 * The first key that one object of this (valid) JSON text holds twice, with the key of the object
 * holding it ('' at the top level), or undefined. One pass over the text, no recursion.
 */
function duplicateKey(text: string): { key: string; path: string } | undefined {
  const objects: ({ keys: Set<string>; name: string } | null)[] = []; // null: an array
  let expectKey = false;
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // a string: find its end
      let j = i + 1;
      for (;;) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      const obj = objects[objects.length - 1];
      if (obj && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (obj.keys.has(key)) return { key, path: obj.name };
        obj.keys.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b) { // {
      objects.push({ keys: new Set(), name: lastKey });
      expectKey = true;
    } else if (c === 0x5b) { // [
      objects.push(null);
      expectKey = false;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      objects.pop();
      expectKey = false;
    } else if (c === 0x2c) { // ,
      expectKey = objects[objects.length - 1] !== null && objects.length > 0;
    }
  }
  return undefined;
}
