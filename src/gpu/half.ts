/** IEEE half and bfloat16 conversions on the CPU (for weights and readback). */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One f16 bit pattern to a number. */
export function f16ToF32(h: number): number {
  const s = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) {
    // zero or subnormal: m * 2^-24
    const v = m * 5.960464477539063e-8;
    return s ? -v : v;
  }
  if (e === 31) u32[0] = s | 0x7f800000 | (m << 13);
  else u32[0] = s | ((e + 112) << 23) | (m << 13);
  return f32[0];
}

export function f16ToF32Array(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]!);
  return out;
}

/** One number to its f16 bit pattern, rounding to nearest even. */
export function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const s = (x >>> 16) & 0x8000;
  const e = (x >>> 23) & 0xff;
  let m = x & 0x7fffff;
  if (e === 0xff) return s | 0x7c00 | (m ? 0x200 : 0);
  const ee = e - 112;
  if (ee >= 31) return s | 0x7c00;
  if (ee <= 0) {
    if (ee < -10) return s;
    m |= 0x800000;
    const shift = 14 - ee;
    let h = m >> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return s | h;
  }
  let h = (ee << 10) | (m >> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return s | h;
}

export function f32ToF16Array(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]!);
  return out;
}

/** bfloat16 words to f32: the upper half of an f32. */
export function bf16ToF32Array(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}
