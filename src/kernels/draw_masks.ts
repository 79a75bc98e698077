/**
 * Drawing mask logits straight into a texture (e.g. a canvas's current texture), without reading
 * them back: one render pass with a full-screen triangle whose fragment shader
 *   - upsamples every object's logits [O, h, w] to the target size bilinearly, with the arithmetic
 *     of resizeBilinear (F.interpolate, align_corners=False), so a pixel is drawn as covered
 *     exactly when the predictor's upsampled logit there is > threshold;
 *   - takes the colour of the last object covering the pixel (as maskOverlay) and blends it with
 *     `alpha` over the frame `image` if one is given (sampled at the target's pixel centres:
 *     texel-exact when the sizes match, bilinear otherwise), else writes the colour with `alpha`
 *     on a transparent background (straight alpha, or premultiplied for a canvas configured with
 *     alphaMode 'premultiplied').
 *
 * Ordering: work recorded on the GpuContext is submitted first (ctx.flush), then the render pass
 * in its own command buffer, so the draw sees the logits the compute work produced.
 */
import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { f32bits } from './connected_components.js';

/** Distinct colours a draw can take (objects beyond that cycle through them). */
export const MAX_DRAW_COLORS = 16;

export interface DrawMasksOptions {
  /** [O, h, w] (or [..., h, w]: leading axes are objects): low-res or full-res logits */
  logits: Tensor;
  /** the texture drawn into (RENDER_ATTACHMENT usage), rgba8unorm or bgra8unorm (or any float-filterable colour format) */
  target: GPUTexture;
  /** the frame to composite the masks over (TEXTURE_BINDING usage); without it the background is transparent */
  image?: GPUTexture;
  /** [r, g, b] in 0..255 per object, cycled (at most MAX_DRAW_COLORS); defaults to four colours */
  colors?: readonly (readonly [number, number, number])[];
  /** opacity of the masks, 0..1 (default 0.5) */
  alpha?: number;
  /** logit threshold (default 0) */
  threshold?: number;
  /** without an image: write premultiplied colours (default false: straight alpha, as maskOverlay) */
  premultiplied?: boolean;
}

const DEFAULT_COLORS: (readonly [number, number, number])[] = [[30, 144, 255], [255, 64, 64], [64, 200, 64], [255, 200, 0]];

const drawWGSL = (withImage: boolean): string => /* wgsl */ `
// ---- shader: draw_masks${withImage ? ' (over an image)' : ''} ----
struct Params {
  src: vec4u,      // O objects, h, w, premultiplied
  dst: vec4u,      // H, W (target), number of colours, -
  f: vec4f,        // threshold, alpha, h / H, w / W (as f32, the resize scales)
  colors: array<vec4f, ${MAX_DRAW_COLORS}>,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
${withImage ? `@group(0) @binding(2) var image: texture_2d<f32>;
@group(0) @binding(3) var image_sampler: sampler;` : ''}

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4f {
  // (-1, -1), (3, -1), (-1, 3): one triangle covering the viewport
  let p = vec2f(f32((i << 1u) & 2u), f32(i & 2u));
  return vec4f(p * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) pos: vec4f) -> @location(0) vec4f {
  let ox = u32(pos.x);   // pixel centres are at (ox + 0.5, oy + 0.5), y down
  let oy = u32(pos.y);
  let h = P.src.y;
  let w = P.src.z;
  // the source position, neighbours and weights as resizeBilinear computes them
  let ry = max(P.f.z * (f32(oy) + 0.5) - 0.5, 0.0);
  let rx = max(P.f.w * (f32(ox) + 0.5) - 0.5, 0.0);
  let y0 = u32(ry);
  let x0 = u32(rx);
  let y1 = min(y0 + 1u, h - 1u);
  let x1 = min(x0 + 1u, w - 1u);
  let ly1 = ry - f32(y0);
  let lx1 = rx - f32(x0);
  let ly0 = 1.0 - ly1;
  let lx0 = 1.0 - lx1;
  var covered = -1;
  for (var m = 0u; m < P.src.x; m++) {
    let base = m * h * w;
    let v = ly0 * (lx0 * logits[base + y0 * w + x0] + lx1 * logits[base + y0 * w + x1]) +
            ly1 * (lx0 * logits[base + y1 * w + x0] + lx1 * logits[base + y1 * w + x1]);
    if (v > P.f.x) { covered = i32(m); }
  }
  let a = P.f.y;
  var color = vec3f(0.0);
  if (covered >= 0) { color = P.colors[u32(covered) % P.dst.z].rgb; }
${withImage ? `
  let size = textureDimensions(image);
  var under: vec4f;
  if (size.x == P.dst.y && size.y == P.dst.x) {
    under = textureLoad(image, vec2u(ox, oy), 0);
  } else {
    under = textureSampleLevel(image, image_sampler, pos.xy / vec2f(f32(P.dst.y), f32(P.dst.x)), 0.0);
  }
  if (covered < 0) { return under; }
  return vec4f(mix(under.rgb, color, a), under.a);` : `
  if (covered < 0) { return vec4f(0.0); }
  if (P.src.w == 1u) { return vec4f(color * a, a); }
  return vec4f(color, a);`}
}
`;

const pipelines = new WeakMap<GPUDevice, Map<string, GPURenderPipeline>>();
const samplers = new WeakMap<GPUDevice, GPUSampler>();

function renderPipeline(ctx: GpuContext, format: GPUTextureFormat, withImage: boolean): GPURenderPipeline {
  let cache = pipelines.get(ctx.device);
  if (!cache) pipelines.set(ctx.device, (cache = new Map()));
  const key = `${format}:${withImage}`;
  let p = cache.get(key);
  if (!p) {
    const module = ctx.device.createShaderModule({ label: 'draw_masks', code: drawWGSL(withImage) });
    p = ctx.device.createRenderPipeline({
      label: 'draw_masks',
      layout: 'auto',
      vertex: { module, entryPoint: 'vs' },
      fragment: { module, entryPoint: 'fs', targets: [{ format }] },
      primitive: { topology: 'triangle-list' },
    });
    cache.set(key, p);
    ctx.stats.pipelinesCompiled++;
  }
  return p;
}

/**
 * Draws the masks into `target` (replacing its contents). Submits the context's recorded work
 * first. Returns without waiting for the GPU: bad options are refused here, and a draw the GPU
 * refuses all the same (e.g. into a destroyed texture) is a GpuError thrown by the next call on
 * the context (unless this is part of a call that waits, such as ImagePredictor.predict).
 */
export function drawMasks(ctx: GpuContext, o: DrawMasksOptions): void {
  const { logits, target, image } = o;
  if (logits.shape.length < 2) throw new Error(`drawMasks: logits [${logits.shape}] have no [h, w] axes`);
  if (logits.dtype !== 'f32') throw new Error('drawMasks: logits must be f32');
  if (logits.buffer.size > ctx.maxBindingBytes) {
    throw new RangeError(`drawMasks: logits [${logits.shape}] exceed one GPU binding (${ctx.maxBindingBytes} bytes); draw the low-res logits (they are upsampled here)`);
  }
  const RENDER_ATTACHMENT = 0x10, TEXTURE_BINDING = 0x04; // GPUTextureUsage
  if (!(target.usage & RENDER_ATTACHMENT)) throw new Error('drawMasks: the target texture was not made with RENDER_ATTACHMENT usage');
  if (image && !(image.usage & TEXTURE_BINDING)) throw new Error('drawMasks: the image texture was not made with TEXTURE_BINDING usage');
  const h = logits.shape[logits.shape.length - 2]!, w = logits.shape[logits.shape.length - 1]!;
  if (h === 0 || w === 0) throw new Error(`drawMasks: empty logits [${logits.shape}]`);
  const objects = logits.size / (h * w);
  const H = target.height, W = target.width;
  const colors = o.colors ?? DEFAULT_COLORS;
  if (colors.length === 0 || colors.length > MAX_DRAW_COLORS) throw new Error(`drawMasks: ${colors.length} colours (1..${MAX_DRAW_COLORS})`);
  const alpha = o.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`drawMasks: alpha ${alpha} is not in [0, 1]`);
  const threshold = o.threshold ?? 0;
  if (!Number.isFinite(threshold)) throw new Error(`drawMasks: threshold ${threshold} is not finite`);

  const words = new Uint32Array(12 + 4 * MAX_DRAW_COLORS);
  words.set([objects, h, w, o.premultiplied ? 1 : 0, H, W, colors.length, 0]);
  // the same f32 scales resizeBilinear compiles in
  words.set([f32bits(threshold), f32bits(alpha), f32bits(h / H), f32bits(w / W)], 8);
  colors.forEach((c, i) => words.set(c.slice(0, 3).map((v) => f32bits(v / 255)), 12 + 4 * i));
  ctx.reportLater(ctx.guardLater(`drawMasks (${objects} object${objects > 1 ? 's' : ''} into a ${W}x${H} ${target.format} texture)`,
    () => record(ctx, o, words)).error);
}

function record(ctx: GpuContext, o: DrawMasksOptions, words: Uint32Array): void {
  const { logits, target, image } = o;
  const params = ctx.uniform(words);
  const pipeline = renderPipeline(ctx, target.format, image !== undefined);
  const entries: GPUBindGroupEntry[] = [
    { binding: 0, resource: { buffer: params } },
    { binding: 1, resource: { buffer: logits.buffer } },
  ];
  if (image) {
    entries.push({ binding: 2, resource: image.createView() });
    let sampler = samplers.get(ctx.device);
    if (!sampler) samplers.set(ctx.device, (sampler = ctx.device.createSampler({ magFilter: 'linear', minFilter: 'linear' })));
    entries.push({ binding: 3, resource: sampler });
  }
  const bindGroup = ctx.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });

  ctx.flush(); // the compute work producing the logits goes first
  const enc = ctx.device.createCommandEncoder({ label: 'draw_masks' });
  const pass = enc.beginRenderPass({
    colorAttachments: [{ view: target.createView(), loadOp: 'clear', clearValue: [0, 0, 0, 0], storeOp: 'store' }],
  });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.draw(3);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  ctx.stats.submits++;
}
