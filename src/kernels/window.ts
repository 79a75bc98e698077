import type { GpuContext } from '../gpu/context.js';
import type { Tensor } from '../gpu/tensor.js';
import { grid1d, memoWGSL } from './util.js';

/**
 * Non-overlapping window attention's reshuffles, as the ViTDet-style backbone does them
 * (window_partition / window_unpartition in the reference's backbones/utils.py):
 * the feature map is zero-padded at the bottom and right up to a multiple of the window size, and
 * the windows are listed row-major (batch, window row, window column), each window's tokens
 * row-major too.
 */

const WG = 256;

const paddedGrid = (H: number, W: number, ws: number) => {
  const Hp = Math.ceil(H / ws) * ws, Wp = Math.ceil(W / ws) * ws;
  return { Hp, Wp, nWh: Hp / ws, nWw: Wp / ws };
};

const partitionWGSL = memoWGSL((B: number, H: number, W: number, C: number, ws: number): string => {
  const { nWh, nWw } = paddedGrid(H, W, ws);
  const total = B * nWh * nWw * ws * ws * C;
  return /* wgsl */ `
// ---- kernel: window_partition ----
// x [${B}, ${H}, ${W}, ${C}] -> windows [${B * nWh * nWw}, ${ws * ws}, ${C}] (window ${ws}, ${nWh}x${nWw} windows)
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= ${total}u) { return; }
  let c = i % ${C}u;
  let t = (i / ${C}u) % ${ws * ws}u;   // token within the window
  let win = i / ${C * ws * ws}u;        // b * nWh * nWw + wh * nWw + ww
  let y = (win / ${nWw}u) % ${nWh}u * ${ws}u + t / ${ws}u;
  let xx = (win % ${nWw}u) * ${ws}u + t % ${ws}u;
  let b = win / ${nWh * nWw}u;
  let inside = y < ${H}u && xx < ${W}u;  // padding is zero
  out[i] = select(0.0, x[select(0u, ((b * ${H}u + y) * ${W}u + xx) * ${C}u + c, inside)], inside);
}
`;
});

const unpartitionWGSL = memoWGSL((B: number, H: number, W: number, C: number, ws: number, residual: boolean): string => {
  const { nWh, nWw } = paddedGrid(H, W, ws);
  const total = B * H * W * C;
  return /* wgsl */ `
// ---- kernel: window_unpartition${residual ? ' (+ residual)' : ''} ----
// windows [${B * nWh * nWw}, ${ws * ws}, ${C}] -> out [${B}, ${H}, ${W}, ${C}] (padding cropped)
@group(0) @binding(0) var<storage, read> win: array<f32>;
${residual ? '@group(0) @binding(1) var<storage, read> res: array<f32>;' : ''}
@group(0) @binding(${residual ? 2 : 1}) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + lid;
  if (i >= ${total}u) { return; }
  let c = i % ${C}u;
  let xx = (i / ${C}u) % ${W}u;
  let y = (i / ${C * W}u) % ${H}u;
  let b = i / ${C * W * H}u;
  let w = (b * ${nWh}u + y / ${ws}u) * ${nWw}u + xx / ${ws}u;
  let t = (y % ${ws}u) * ${ws}u + xx % ${ws}u;
  out[i] = win[(w * ${ws * ws}u + t) * ${C}u + c]${residual ? ' + res[i]' : ''};
}
`;
});

/** window_partition: x [B, H, W, C] -> windows [B*nWh*nWw, ws*ws, C], zero-padded to multiples of ws. */
export function windowPartition(ctx: GpuContext, x: Tensor, ws: number): Tensor {
  if (x.shape.length !== 4) throw new Error(`windowPartition: x must be [B, H, W, C], got [${x.shape}]`);
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const { nWh, nWw } = paddedGrid(H, W, ws);
  const out = ctx.empty([B * nWh * nWw, ws * ws, C]);
  ctx.run({
    pipeline: ctx.pipeline('window_partition', partitionWGSL(B, H, W, C, ws)),
    bindings: [x, out],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}

/**
 * window_unpartition: windows [B*nWin, ws*ws, C] -> [B, H, W, C], the padding cropped.
 * With `residual` [B, H, W, C], returns residual + the unpartitioned map (the ViT block's shortcut).
 */
export function windowUnpartition(ctx: GpuContext, windows: Tensor, ws: number, H: number, W: number,
  opts: { residual?: Tensor } = {}): Tensor {
  if (windows.shape.length !== 3 || windows.shape[1] !== ws * ws) {
    throw new Error(`windowUnpartition: windows must be [B*nWin, ${ws * ws}, C], got [${windows.shape}]`);
  }
  const { nWh, nWw } = paddedGrid(H, W, ws);
  const [nWin, , C] = windows.shape as [number, number, number];
  if (nWin % (nWh * nWw) !== 0) throw new Error(`windowUnpartition: ${nWin} windows is not a multiple of ${nWh}x${nWw}`);
  const B = nWin / (nWh * nWw);
  const r = opts.residual;
  if (r && (r.shape.length !== 4 || r.shape[0] !== B || r.shape[1] !== H || r.shape[2] !== W || r.shape[3] !== C)) {
    throw new Error(`windowUnpartition: residual [${r.shape}] is not [${B}, ${H}, ${W}, ${C}]`);
  }
  const out = ctx.empty([B, H, W, C]);
  ctx.run({
    pipeline: ctx.pipeline('window_unpartition', unpartitionWGSL(B, H, W, C, ws, !!r)),
    bindings: r ? [windows, r, out] : [windows, out],
    workgroups: grid1d(Math.ceil(out.size / WG)).workgroups,
  });
  return out;
}
