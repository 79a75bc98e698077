/**
 * loadWeights: a local HTTP server on 127.0.0.1 serving the tiny golden's weights (whole, slowly,
 * cut off, without a length, as a .pt), a Node path, a Blob, bytes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWeights } from '../src/weights/load.js';

const DIR = '/work/shared/golden/tiny';
const weights = readFileSync(`${DIR}/weights.safetensors`);
const checkpoint = readFileSync(`${DIR}/checkpoint.pt`);
const CHUNK = 256 * 1024;

let server: Server;
let base = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const path = req.url ?? '/';
    const body = path === '/checkpoint.pt' ? checkpoint : weights;
    if (path === '/missing') { res.writeHead(404); res.end('no'); return; }
    if (path === '/nolen') { // chunked transfer encoding: no Content-Length
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < body.length; i += CHUNK) res.write(body.subarray(i, i + CHUNK));
      res.end();
      return;
    }
    if (path === '/short') { // a truncated file, served with its (short) length
      const part = body.subarray(0, body.length - 1000);
      res.writeHead(200, { 'content-length': part.length });
      res.end(part);
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    const cut = path === '/cut' ? Math.floor(body.length / 2) : body.length;
    for (let i = 0; i < cut; i += CHUNK) {
      if (res.destroyed) return;
      const chunk = body.subarray(i, Math.min(i + CHUNK, cut));
      await new Promise<void>((r) => { res.write(chunk, () => r()); });
      if (path === '/slow') await sleep(20);
    }
    if (path === '/cut') { await sleep(50); res.socket?.destroy(); return; } // the connection drops half-way
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** Records progress calls and checks they are monotonic. */
function progress() {
  const calls: [number, number | undefined][] = [];
  return {
    calls,
    onProgress: (loaded: number, total: number | undefined) => { calls.push([loaded, total]); },
    monotonic: () => calls.every((c, i) => i === 0 || c[0] >= calls[i - 1]![0]),
  };
}

describe('loadWeights', () => {
  it('streams a URL with progress up to the Content-Length', async () => {
    const p = progress();
    const f = await loadWeights(`${base}/weights.safetensors`, { onProgress: p.onProgress });
    expect(f.names().length).toBe(307);
    expect(f.source).toBe(`${base}/weights.safetensors`);
    expect(p.calls.length).toBeGreaterThan(3);
    expect(p.monotonic()).toBe(true);
    expect(p.calls.every(([, t]) => t === weights.length)).toBe(true);
    expect(p.calls.at(-1)).toEqual([weights.length, weights.length]);
    // the same bytes as the file
    const name = 'image_encoder.trunk.pos_embed';
    expect([...f.getF32(name).slice(0, 50)]).toEqual([...(await loadWeights(`${DIR}/weights.safetensors`)).getF32(name).slice(0, 50)]);
  });

  it('reports an unknown total without Content-Length and still ends at the size', async () => {
    const p = progress();
    const f = await loadWeights(`${base}/nolen`, { onProgress: p.onProgress });
    expect(f.names().length).toBe(307);
    expect(p.monotonic()).toBe(true);
    expect(p.calls.at(-1)![0]).toBe(weights.length);
    expect(p.calls.every(([, t]) => t === undefined)).toBe(true);
  });

  it('cancels mid-way through an AbortSignal', async () => {
    const ac = new AbortController();
    let last = 0;
    const run = loadWeights(`${base}/slow`, {
      signal: ac.signal,
      onProgress: (loaded) => { last = loaded; if (loaded > weights.length / 3) ac.abort(); },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(last).toBeGreaterThan(0);
    expect(last).toBeLessThan(weights.length);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(loadWeights(`${base}/weights.safetensors`, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(loadWeights(`${DIR}/weights.safetensors`, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('a connection that drops half-way gives the safetensors truncation error', async () => {
    await expect(loadWeights(`${base}/cut`)).rejects.toThrow(/truncated: tensor ".*" ends at byte \d+ .*bytes missing.*transfer ended early/s);
  });

  it('a truncated file gives the safetensors truncation error', async () => {
    await expect(loadWeights(`${base}/short`)).rejects.toThrow(/short: truncated: .*1000 bytes missing/);
  });

  it('an HTTP error names the status', async () => {
    await expect(loadWeights(`${base}/missing`)).rejects.toThrow(/HTTP 404/);
  });

  it('converts a .pt checkpoint on the fly', async () => {
    const f = await loadWeights(`${base}/checkpoint.pt`);
    const ref = await loadWeights(`${DIR}/weights.safetensors`);
    expect(f.names().sort()).toEqual(ref.names().sort());
    const n = 'sam_mask_decoder.iou_token.weight';
    expect([...f.getF32(n)]).toEqual([...ref.getF32(n)]);
  });

  it('reads a Node path with progress', async () => {
    const p = progress();
    const f = await loadWeights(`${DIR}/weights.safetensors`, { onProgress: p.onProgress });
    expect(f.names().length).toBe(307);
    expect(p.monotonic()).toBe(true);
    expect(p.calls.at(-1)).toEqual([weights.length, weights.length]);
  });

  it('reads a Blob and bytes', async () => {
    const p = progress();
    const blob = new Blob([weights]);
    const f = await loadWeights(blob, { onProgress: p.onProgress, source: 'tiny.safetensors' });
    expect(f.source).toBe('tiny.safetensors');
    expect(f.names().length).toBe(307);
    expect(p.monotonic()).toBe(true);
    expect(p.calls.at(-1)).toEqual([weights.length, weights.length]);
    const g = await loadWeights(new Uint8Array(weights));
    expect(g.names().length).toBe(307);
    await expect(loadWeights(new Blob([weights.subarray(0, 5000)]))).rejects.toThrow(/truncated/);
  });
});
