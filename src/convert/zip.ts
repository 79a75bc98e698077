/**
 * A minimal reader for the zip files torch.save writes, written from the zip specification
 * (PKWARE APPNOTE). It handles what a PyTorch checkpoint needs:
 *
 *   [local header 1][data 1] ... [local header n][data n]
 *   [central directory: one header per entry]
 *   [ZIP64 end of central directory record + locator]   (torch writes these even for small files)
 *   [end of central directory record]                   (22 bytes + comment, at the very end)
 *
 * Entries are found through the central directory (torch's local headers carry zero sizes and a
 * data descriptor, so only the central directory has the sizes). Only STORED (uncompressed)
 * entries can be read; torch never compresses, and a DEFLATE entry gets an error saying so.
 * Each entry's CRC-32 is checked when it is read.
 *
 * Every problem is a `ZipError` whose message starts with the file's name and says what is
 * missing or damaged.
 */

export class ZipError extends Error {
  override name = 'ZipError';
}

export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

export interface ZipArchive {
  readonly source: string;
  /** Entries by name, in central directory order. */
  readonly entries: Map<string, ZipEntry>;
  /** An entry's bytes: a view of the archive's bytes (STORED entries only), CRC-checked. */
  read(name: string): Uint8Array;
  /** An entry's bytes as `read` gives them, without the CRC check (for a caller that checks them in pieces). */
  data(name: string): Uint8Array;
  /** Throws the CRC error unless `crc` is the entry's stored CRC-32. */
  checkCrc(name: string, crc: number): void;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

export function openZip(bytes: Uint8Array, source = '<bytes>'): ZipArchive {
  const fail = (msg: string): never => {
    throw new ZipError(`${source}: ${msg}`);
  };
  const len = bytes.byteLength;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, len);
  const u16 = (p: number) => dv.getUint16(p, true);
  const u32 = (p: number) => dv.getUint32(p, true);
  const u64 = (p: number) => {
    const v = dv.getBigUint64(p, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`64-bit field at byte ${p} is too large (${v})`);
    return Number(v);
  };

  if (len < 4 || u32(0) !== SIG_LOCAL) {
    fail(len < 4 ? `file is only ${len} bytes: empty or truncated`
      : 'not a zip file (no local header signature at byte 0): a PyTorch checkpoint saved by torch.save is a zip; ' +
        'files from torch < 1.6 (legacy tar/pickle format) are not supported');
  }

  // End of central directory: the last record with its signature whose comment ends the file.
  let eocd = -1;
  for (let p = len - EOCD_SIZE; p >= Math.max(0, len - EOCD_SIZE - MAX_COMMENT); p--) {
    if (u32(p) === SIG_EOCD && p + EOCD_SIZE + u16(p + 20) === len) { eocd = p; break; }
  }
  if (eocd < 0) {
    fail(`truncated or corrupt: the end of central directory record is missing, so the central directory ` +
      `(the zip's table of contents, stored at the end) cannot be found; the file is ${len} bytes — ` +
      `was the download or copy interrupted?`);
  }

  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  let cdEnd = eocd; // where the central directory should end
  const loc = eocd - 20;
  if (loc >= 0 && u32(loc) === SIG_EOCD64_LOCATOR) {
    const rec = u64(loc + 8);
    if (rec + 56 > loc || u32(rec) !== SIG_EOCD64) {
      // It normally sits just before its locator; if it is there, the file has lost or gained bytes.
      const actual = loc - 56;
      if (actual >= 0 && u32(actual) === SIG_EOCD64) fail(`truncated or corrupt: ${shifted('the ZIP64 end record', rec, actual)}`);
      fail(`corrupt: the ZIP64 end of central directory record is not at byte ${rec} where its locator points`);
    }
    count = u64(rec + 32);
    cdSize = u64(rec + 40);
    cdOffset = u64(rec + 48);
    cdEnd = rec;
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    fail('corrupt: the end record asks for ZIP64 but there is no ZIP64 locator before it');
  }
  if (cdOffset + cdSize !== cdEnd) {
    fail(`truncated or corrupt: ${shifted('the central directory', cdOffset, cdEnd - cdSize)}`);
  }

  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder('utf-8');
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdEnd || u32(p) !== SIG_CENTRAL) {
      fail(`corrupt central directory: header ${i} of ${count} is missing at byte ${p}`);
    }
    const flags = u16(p + 8);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    const next = p + 46 + nameLen + extraLen + commentLen;
    if (next > cdEnd) {
      fail(`corrupt central directory: header ${i} of ${count} at byte ${p} claims ${nameLen + extraLen + commentLen} bytes ` +
        `of name, extra field and comment, which run past the end of the central directory at byte ${cdEnd}`);
    }
    const name = utf8.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    if (flags & 1) fail(`entry ${JSON.stringify(name)} is encrypted`);
    if (entries.has(name)) fail(`the central directory lists the entry ${JSON.stringify(name)} twice`);
    const e: ZipEntry = {
      name, method: u16(p + 10), crc32: u32(p + 16),
      compressedSize: u32(p + 20), size: u32(p + 24), localHeaderOffset: u32(p + 42),
    };
    // ZIP64 extra field (id 1): 64-bit values for exactly the fields that are 0xFFFFFFFF, in this order.
    const xEnd = p + 46 + nameLen + extraLen;
    for (let x = p + 46 + nameLen; x + 4 <= xEnd; x += 4 + u16(x + 2)) {
      if (u16(x) !== 1) continue;
      const fieldEnd = Math.min(x + 4 + u16(x + 2), xEnd);
      let q = x + 4;
      const take = () => {
        if (q + 8 > fieldEnd) fail(`corrupt central directory: the ZIP64 field of entry ${JSON.stringify(name)} is too short`);
        const v = u64(q);
        q += 8;
        return v;
      };
      if (e.size === 0xffffffff) e.size = take();
      if (e.compressedSize === 0xffffffff) e.compressedSize = take();
      if (e.localHeaderOffset === 0xffffffff) e.localHeaderOffset = take();
    }
    entries.set(name, e);
    p = next;
  }

  /** An entry's bytes, bounds-checked against the archive (no CRC check). */
  const data = (name: string): Uint8Array => {
    const e = entries.get(name);
    if (!e) return fail(`entry ${JSON.stringify(name)} is missing from the archive`);
    if (e.method !== 0) {
      fail(`entry ${JSON.stringify(name)} is compressed (method ${e.method}${e.method === 8 ? ', DEFLATE' : ''}); only STORED ` +
        `entries are supported, as torch.save writes them — re-save the checkpoint with torch.save`);
    }
    const h = e.localHeaderOffset;
    if (h + 30 > cdOffset || u32(h) !== SIG_LOCAL) {
      fail(`corrupt: the local header of entry ${JSON.stringify(name)} is not at byte ${h} where the central directory points`);
    }
    const start = h + 30 + u16(h + 26) + u16(h + 28);
    const end = start + e.compressedSize;
    if (end > cdOffset) {
      fail(`truncated or corrupt: the data of entry ${JSON.stringify(name)} should span bytes [${start}, ${end}), ` +
        `past the start of the central directory at byte ${cdOffset}`);
    }
    return bytes.subarray(start, end);
  };

  const checkCrc = (name: string, crc: number): void => {
    const e = entries.get(name)!;
    if (crc !== e.crc32) {
      fail(`corrupt: the data of entry ${JSON.stringify(name)} fails its CRC-32 check (stored ${hex(e.crc32)}, computed ${hex(crc)})`);
    }
  };

  const read = (name: string): Uint8Array => {
    const d = data(name);
    checkCrc(name, crc32(d));
    return d;
  };

  return { source, entries, read, data, checkCrc };
}

/** Describes a structure found at `actual` while the file says it is at `stated`. */
const shifted = (what: string, stated: number, actual: number) =>
  `${what} is at byte ${actual}, but the file says it is at byte ${stated}: ` +
  (stated > actual ? `${stated - actual} bytes are missing before it (part of the file was cut out)`
    : `${actual - stated} unexpected bytes were found before it`);

const hex = (v: number) => '0x' + v.toString(16).padStart(8, '0');

/**
 * Eight 256-entry tables for CRC-32 by "slicing": table k maps a byte to the CRC of that byte
 * followed by k zero bytes, so eight input bytes are folded in with eight lookups and no
 * dependency between them (about 4x the speed of one table lookup per byte).
 */
let crcTables: Uint32Array | null = null;

function tables(): Uint32Array {
  if (crcTables) return crcTables;
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  }
  return (crcTables = t);
}

/** CRC-32 (IEEE 802.3, the zip checksum); `crc` is the CRC of the bytes before `data`, to compute it in pieces. */
export function crc32(data: Uint8Array, crc = 0): number {
  const t = tables();
  let c = (crc ^ 0xffffffff) >>> 0;
  let i = 0;
  const n8 = data.length - (data.length % 8);
  for (; i < n8; i += 8) {
    const a = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]! ^
      t[768 + data[i + 4]!]! ^ t[512 + data[i + 5]!]! ^ t[256 + data[i + 6]!]! ^ t[data[i + 7]!]!;
  }
  for (; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
