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
 * transfer.
 */
import { parseSafetensors, SafetensorsError, type SafetensorsFile } from '../io/safetensors.js';
import { convertCheckpoint } from '../convert/convert.js';

export type WeightsSource = string | URL | Blob | ArrayBuffer | Uint8Array;

export interface LoadWeightsOptions {
  /** Called as bytes arrive: `total` is the expected size when known. The last call has loaded === total. */
  onProgress?(loaded: number, total: number | undefined): void;
  signal?: AbortSignal;
  /** Name used in error messages (default: the path, URL or file name). */
  source?: string;
  /** For a .pt checkpoint: store floating-point tensors as F16 while converting. */
  f16?: boolean;
}

/** The error a cancelled load rejects with (a DOMException named AbortError, as fetch's). */
function abortError(source: string, signal?: AbortSignal): Error {
  const reason = signal?.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException(`Loading ${source} was aborted${reason !== undefined && !(reason instanceof Error) ? ` (${String(reason)})` : ''}`, 'AbortError');
}

const isZip = (b: Uint8Array): boolean => b.byteLength >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04;

/** Parses bytes as safetensors, or converts them when they are a PyTorch checkpoint. */
export function weightsFromBytes(bytes: Uint8Array, source: string, opts: { f16?: boolean } = {}): SafetensorsFile {
  if (isZip(bytes)) {
    return parseSafetensors(convertCheckpoint(bytes, { source, f16: opts.f16 }), source);
  }
  return parseSafetensors(bytes, source);
}

/** Bytes read, and the error that ended the stream early (a dropped connection), if any. */
interface Collected {
  bytes: Uint8Array;
  streamError?: Error;
}

/**
 * Collects a stream of chunks into one buffer. With a known total the buffer is allocated once;
 * otherwise it grows by doubling. A stream longer than `total` is kept whole (the parser decides).
 * A read error other than an abort ends the stream: what arrived is returned with the error, so
 * the parser can say what is missing.
 */
async function collect(reader: ReadableStreamDefaultReader<Uint8Array>, total: number | undefined,
  opts: LoadWeightsOptions, source: string): Promise<Collected> {
  const { signal, onProgress } = opts;
  let buf = new Uint8Array(total ?? 1 << 20);
  let loaded = 0;
  let streamError: Error | undefined;
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
      if (r.done) break;
      const chunk = r.value;
      if (loaded + chunk.byteLength > buf.byteLength) {
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, loaded + chunk.byteLength));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(chunk, loaded);
      loaded += chunk.byteLength;
      onProgress?.(loaded, total);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
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
  return collect(res.body.getReader(), total, opts, source);
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
    return await collect(web.getReader(), size, opts, source);
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
    got = await collect(source.stream().getReader() as ReadableStreamDefaultReader<Uint8Array>, source.size, opts, name);
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
      file = weightsFromBytes(got.bytes, name, { f16: opts.f16 });
    } catch (e) {
      if (e instanceof Error) e.message += ` (${why})`;
      throw e;
    }
    void file;
    throw new SafetensorsError(`${name}: ${why}`, { cause: got.streamError });
  }
  return weightsFromBytes(got.bytes, name, { f16: opts.f16 });
}
