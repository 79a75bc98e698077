/**
 * `sharp` (libvips), the optional peer dependency that decodes and encodes image files in Node.
 * Kept apart from the public declarations: nothing exported from the package names sharp's types.
 */
import { importOptional } from './packages.js';

export type Sharp = typeof import('sharp').default;

let loaded: Promise<Sharp> | null = null;

/** The sharp function, or a MissingPackageError saying `npm install sharp`. */
export function loadSharp(purpose = 'reading and writing image files'): Promise<Sharp> {
  loaded ??= importOptional('sharp', purpose).then((m) => (m as { default: Sharp }).default);
  loaded.catch(() => { loaded = null; }); // a later call tries again (after an install)
  return loaded;
}
