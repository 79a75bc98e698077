/**
 * Getting a weights file into memory, with progress and cancellation, from wherever it is:
 *
 *   - a URL (http:, https:, blob:, data:, or a relative URL in a browser): streamed with fetch,
 *     progress after every chunk against the Content-Length (when the server gives one);
 *   - a Node file path (or file: URL): streamed with node:fs (imported on demand, so this module
 *     stays usable in a browser bundle);
 *   - a File / Blob: streamed with blob.stream();
 *   - an ArrayBuffer / Uint8Array already in memory.
 *
 * A safetensors file is parsed (and validated: a short download fails with the safetensors
 * truncation error). A PyTorch checkpoint (.pt, a zip: it starts with "PK") is converted on the
 * fly, keeping its dtypes (see src/convert/convert.ts).
 *
 * Cancelling through `signal` rejects with a DOMException named "AbortError" and stops the
 * transfer, or the conversion of a checkpoint (which yields to the event loop as it goes).
 *
 * What is read is capped, so a hostile or broken server cannot grow memory without end: by
 * `maxBytes` (default DEFAULT_MAX_WEIGHTS_BYTES, above the largest official checkpoint), by the
 * Content-Length or file size, and for safetensors by the size its header describes, known as
 * soon as the header has arrived. A body that goes on past any of them is cut off with an error.
 */
import { parseSafetensors, safetensorsFileSize, SafetensorsError, type SafetensorsFile } from '../io/safetensors.js';
import { CheckpointError, convertCheckpointAsync } from '../convert/convert.js';
import { abortError } from '../io/abort.js';

export type WeightsSource = string | URL | Blob | ArrayBuffer | Uint8Array;

export interface LoadWeightsOptions {
  /** Called as bytes arrive: `total` is the expected size when known. The last call has loaded === total. */
  onProgress?(loaded: number, total: number | undefined): void;
  signal?: AbortSignal;
  /** Name used in error messages (default: the path, URL or file name). */
  source?: string;
  /** For a .pt checkpoint: store floating-point tensors as F16 while converting. */
  f16?: boolean;
  /** The most bytes to read (default DEFAULT_MAX_WEIGHTS_BYTES); a larger file is refused. */
  maxBytes?: number;
}

/**
 * The default cap on a weights file: 2 GiB, above every official EfficientTAM and SAM 2 / 2.1
 * checkpoint (the largest, SAM 2.1 Hiera-L, is 898 MB as a .pt in f32).
 */
export const DEFAULT_MAX_WEIGHTS_BYTES = 2 * 1024 ** 3;

const isZip = (b: Uint8Array): boolean => b.byteLength >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04;

/** Parses bytes as safetensors, or converts them when they are a PyTorch checkpoint (yielding to the event loop; `signal` cancels). */
export async function weightsFromBytes(bytes: Uint8Array, source: string,
  opts: { f16?: boolean; signal?: AbortSignal } = {}): Promise<SafetensorsFile> {
  if (isZip(bytes)) {
    return parseSafetensors(await convertCheckpointAsync(bytes, { source, f16: opts.f16, signal: opts.signal }), source);
  }
  return parseSafetensors(bytes, source);
}

/** The error for a file too large or a body too long: of the file's kind, judged from its first bytes. */
function sizeError(first: Uint8Array, msg: string): Error {
  return isZip(first) ? new CheckpointError(msg) : new SafetensorsError(msg);
}

/** Bytes read, and the error that ended the stream early (a dropped connection), if any. */
interface Collected {
  bytes: Uint8Array;
  streamError?: Error;
}

/**
 * Collects a stream of chunks into one buffer, never more than the limits allow (see the file
 * comment): the first chunk tells the file's kind; a safetensors header, once in, tells its exact
 * size. With a known size the buffer is allocated once; otherwise it grows by doubling. A read
 * error other than an abort ends the stream: what arrived is returned with the error, so the
 * parser can say what is missing.
 */
async function collect(reader: ReadableStreamDefaultReader<Uint8Array>, total: number | undefined,
  opts: LoadWeightsOptions, source: string, totalFrom = 'Content-Length'): Promise<Collected> {
  const { signal, onProgress } = opts;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_WEIGHTS_BYTES;
  let buf = new Uint8Array(0);
  let loaded = 0;
  let limit = Math.min(maxBytes, total ?? Infinity);
  let limitWhy = total !== undefined && total <= maxBytes ? `the ${total} bytes of its ${totalFrom}` : `the ${maxBytes} bytes allowed (option maxBytes)`;
  let headerSize: number | undefined; // the size a safetensors header describes, once known
  let streamError: Error | undefined;
  let done = false;
  const onAbort = () => { void reader.cancel().catch(() => undefined); };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    onProgress?.(0, total);
    for (;;) {
      if (signal?.aborted) throw abortError(source, signal);
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (signal?.aborted) throw abortError(source, signal);
        streamError = e instanceof Error ? e : new Error(String(e));
        break;
      }
      if (signal?.aborted) throw abortError(source, signal);
      if (r.done) { done = true; break; }
      const chunk = r.value;
      if (loaded === 0 && chunk.byteLength > 0 && total !== undefined && total > maxBytes) {
        throw sizeError(chunk, `${source}: the file is ${total} bytes (its ${totalFrom}), more than the ${maxBytes} ` +
          `allowed for a weights file (option maxBytes)`);
      }
      if (loaded + chunk.byteLength > limit) {
        throw sizeError(loaded ? buf : chunk, `${source}: the transfer goes on past ${limitWhy}; stopped reading`);
      }
      if (loaded + chunk.byteLength > buf.byteLength) {
        const want = loaded + chunk.byteLength;
        const size = headerSize !== undefined || total !== undefined ? limit : Math.min(limit, Math.max(want, buf.byteLength * 2, 1 << 20));
        const grown = new Uint8Array(Math.max(size, want));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(chunk, loaded);
      loaded += chunk.byteLength;
      if (headerSize === undefined && !isZip(buf.subarray(0, loaded))) {
        headerSize = safetensorsFileSize(buf.subarray(0, loaded), source);
        if (headerSize !== undefined) {
          if (headerSize > maxBytes) {
            throw new SafetensorsError(`${source}: the header describes a file of ${headerSize} bytes, more than the ` +
              `${maxBytes} allowed for a weights file (option maxBytes)`);
          }
          if (total !== undefined && total > headerSize) {
            throw new SafetensorsError(`${source}: the ${totalFrom} is ${total} bytes, but the safetensors header ` +
              `describes a file of ${headerSize} bytes`);
          }
          if (headerSize < limit) {
            limit = headerSize;
            limitWhy = `the ${headerSize} bytes its safetensors header describes`;
          }
          if (loaded > limit) throw new SafetensorsError(`${source}: the transfer goes on past ${limitWhy}; stopped reading`);
        }
      }
      onProgress?.(loaded, total);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!done && !streamError) void reader.cancel().catch(() => undefined);
  }
  // A short read is reported by the safetensors parser ("truncated: ..."); report the final size.
  if (total !== undefined && loaded !== total) onProgress?.(loaded, loaded);
  return { bytes: loaded === buf.byteLength ? buf : buf.subarray(0, loaded), streamError };
}

const looksLikeUrl = (s: string): boolean => /^(https?|blob|data):/i.test(s);
const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function fromUrl(url: string, opts: LoadWeightsOptions, source: string): Promise<Collected> {
  if (opts.signal?.aborted) throw abortError(source, opts.signal);
  let res: Response;
  try {
    res = await fetch(url, { signal: opts.signal });
  } catch (e) {
    if (opts.signal?.aborted) throw abortError(source, opts.signal);
    throw new Error(`${source}: the download failed (${(e as Error).message})`, { cause: e });
  }
  if (!res.ok) throw new Error(`${source}: HTTP ${res.status} ${res.statusText}`);
  const len = res.headers.get('content-length');
  // A compressed response's Content-Length is the compressed size; then the total is unknown.
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const total = len !== null && !encoded && /^\d+$/.test(len) ? Number(len) : undefined;
  if (!res.body) return { bytes: new Uint8Array(await res.arrayBuffer()) };
  return collect(res.body.getReader(), total, opts, source, 'Content-Length');
}

async function fromPath(path: string, opts: LoadWeightsOptions, source: string): Promise<Collected> {
  // Module names in variables so that browser bundlers leave them alone.
  const fsName = 'node:fs', streamName = 'node:stream';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const { Readable } = (await import(/* @vite-ignore */ streamName)) as typeof import('node:stream');
  if (opts.signal?.aborted) throw abortError(source, opts.signal);
  const size = (await fs.promises.stat(path)).size;
  const nodeStream = fs.createReadStream(path, { highWaterMark: 1 << 20 });
  const web = Readable.toWeb(nodeStream) as unknown as ReadableStream<Uint8Array>;
  try {
    return await collect(web.getReader(), size, opts, source, 'file size');
  } finally {
    nodeStream.destroy();
  }
}

/**
 * Loads a weights file (safetensors, or a PyTorch .pt checkpoint converted on the fly).
 *
 * `source`: a URL, a Node path, a File/Blob, or bytes. Progress is reported per chunk;
 * `signal` cancels (rejecting with an AbortError).
 */
export async function loadWeights(source: WeightsSource, opts: LoadWeightsOptions = {}): Promise<SafetensorsFile> {
  let got: Collected;
  let name: string;
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    name = opts.source ?? '<bytes>';
    if (opts.signal?.aborted) throw abortError(name, opts.signal);
    got = { bytes: source instanceof Uint8Array ? source : new Uint8Array(source) };
    opts.onProgress?.(got.bytes.byteLength, got.bytes.byteLength);
  } else if (typeof source !== 'string' && !(source instanceof URL)) { // a Blob or File
    name = opts.source ?? ('name' in source && typeof source.name === 'string' && source.name ? source.name : '<blob>');
    if (opts.signal?.aborted) throw abortError(name, opts.signal);
    got = await collect(source.stream().getReader() as ReadableStreamDefaultReader<Uint8Array>, source.size, opts, name, 'size');
  } else {
    const s = source instanceof URL ? source.href : source;
    name = opts.source ?? s;
    if (/^file:/i.test(s) && isNode) {
      const urlName = 'node:url';
      const { fileURLToPath } = (await import(/* @vite-ignore */ urlName)) as typeof import('node:url');
      got = await fromPath(fileURLToPath(s), opts, name);
    } else if (looksLikeUrl(s) || !isNode) {
      got = await fromUrl(s, opts, name);
    } else {
      got = await fromPath(s, opts, name);
    }
  }
  if (opts.signal?.aborted) throw abortError(name, opts.signal);
  if (got.streamError) {
    // The transfer broke off (e.g. the connection closed before Content-Length bytes): let the
    // parser say what is missing ("truncated: ..."), and name the transfer's error too.
    const why = `the transfer ended early: ${got.streamError.message}`;
    let file: SafetensorsFile;
    try {
      file = await weightsFromBytes(got.bytes, name, { f16: opts.f16, signal: opts.signal });
    } catch (e) {
      if (e instanceof Error) e.message += ` (${why})`;
      throw e;
    }
    void file;
    throw new SafetensorsError(`${name}: ${why}`, { cause: got.streamError });
  }
  return weightsFromBytes(got.bytes, name, { f16: opts.f16, signal: opts.signal });
}
