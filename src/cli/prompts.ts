/**
 * Prompts as typed on the command line, in image pixels (x to the right, y down, origin at the
 * top-left corner of the picture):
 *
 *   point   x,y          a positive click          x,y:0   a negative click (x,y:1 = positive)
 *   box     x0,y0,x1,y1  top-left and bottom-right corners
 *   object  'frame=0 point=x,y point=x,y:0 box=x0,y0,x1,y1 id=3'   (track: one object's prompt on one frame)
 */
import { CliError, usageError } from './args.js';

export interface PointPrompt {
  x: number;
  y: number;
  /** 1 foreground, 0 background */
  label: 0 | 1;
}

export type BoxPrompt = [number, number, number, number];

/** One object's prompt on one frame (track). */
export interface ObjectPrompt {
  id: number;
  frame: number;
  points: PointPrompt[];
  box?: BoxPrompt;
  /** as typed, for messages */
  text: string;
}

const num = (s: string): number => (s.trim() === '' ? NaN : Number(s));

export function parsePoint(text: string, command: string): PointPrompt {
  const m = /^([^,:]+),([^,:]+)(?::(.*))?$/.exec(text.trim());
  const x = m ? num(m[1]!) : NaN, y = m ? num(m[2]!) : NaN;
  if (!m || !Number.isFinite(x) || !Number.isFinite(y)) {
    throw usageError(command, `point '${text}' is not x,y or x,y:label (e.g. 120,80 or 120,80:0 for a negative click)`);
  }
  const l = m[3];
  if (l !== undefined && l !== '0' && l !== '1') throw usageError(command, `point '${text}': the label is 1 (foreground) or 0 (background), not '${l}'`);
  return { x, y, label: l === '0' ? 0 : 1 };
}

export function parseBox(text: string, command: string): BoxPrompt {
  const parts = text.split(',').map(num);
  if (parts.length !== 4 || !parts.every(Number.isFinite)) {
    throw usageError(command, `box '${text}' is not x0,y0,x1,y1 (the top-left and bottom-right corners in pixels)`);
  }
  const [x0, y0, x1, y1] = parts as BoxPrompt;
  if (x1 < x0 || y1 < y0) throw usageError(command, `box '${text}': x1 must be >= x0 and y1 >= y0 (top-left corner first)`);
  return [x0, y0, x1, y1];
}

/** `--object` values -> one prompt each; objects without `id=` are numbered 1, 2, ... in order. */
export function parseObjects(texts: readonly string[], command: string): ObjectPrompt[] {
  const out: ObjectPrompt[] = [];
  let nextId = 1;
  const used = new Set<number>();
  const parsed = texts.map((text) => {
    const fields = text.trim().split(/\s+/).filter(Boolean);
    if (fields.length === 0) throw usageError(command, `--object '${text}' is empty; e.g. --object 'frame=0 point=120,80'`);
    let frame: number | undefined, id: number | undefined, box: BoxPrompt | undefined;
    const points: PointPrompt[] = [];
    for (const f of fields) {
      const eq = f.indexOf('=');
      const key = eq > 0 ? f.slice(0, eq) : '';
      const val = eq > 0 ? f.slice(eq + 1) : '';
      const int = (what: string): number => {
        const v = num(val);
        if (!Number.isInteger(v) || v < 0) throw usageError(command, `--object '${text}': ${what}=${val} is not a whole number >= 0`);
        return v;
      };
      switch (key) {
        case 'frame': frame = int('frame'); break;
        case 'id': id = int('id'); break;
        case 'point': points.push(parsePoint(val, command)); break;
        case 'box':
          if (box) throw usageError(command, `--object '${text}': one box per object and frame`);
          box = parseBox(val, command);
          break;
        default:
          throw usageError(command, `--object '${text}': '${f}' is not one of frame=N, point=x,y[:label], box=x0,y0,x1,y1, id=N`);
      }
    }
    if (points.length === 0 && !box) throw usageError(command, `--object '${text}' has no point= or box=`);
    if (id !== undefined) used.add(id);
    return { frame: frame ?? 0, id, points, box, text };
  });
  for (const p of parsed) {
    let id = p.id;
    if (id === undefined) {
      while (used.has(nextId)) nextId++;
      id = nextId;
      used.add(id);
    }
    out.push({ id, frame: p.frame, points: p.points, box: p.box, text: p.text });
  }
  const seen = new Set<string>();
  for (const o of out) {
    const k = `${o.id}@${o.frame}`;
    if (seen.has(k)) throw usageError(command, `object ${o.id} has two prompts on frame ${o.frame}; put its points and box in one --object`);
    seen.add(k);
  }
  return out;
}

/** Checks that prompts lie on a W x H picture (edges included). */
export function checkOnImage(what: string, points: readonly PointPrompt[], box: BoxPrompt | undefined, width: number, height: number): void {
  const off = (x: number, y: number) => x < 0 || y < 0 || x > width || y > height;
  for (const p of points) {
    if (off(p.x, p.y)) {
      throw new CliError(`${what}: the point ${p.x},${p.y} is off the image, which is ${width}x${height} ` +
        `(x in 0..${width}, y in 0..${height})`, 2);
    }
  }
  if (box && (off(box[0], box[1]) || off(box[2], box[3]))) {
    throw new CliError(`${what}: the box ${box.join(',')} is not inside the image, which is ${width}x${height} ` +
      `(x in 0..${width}, y in 0..${height})`, 2);
  }
}
