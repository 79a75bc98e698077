/**
 * Optional Node packages (peer dependencies the library uses only when asked): `sharp` decodes and
 * encodes image files. They are imported on demand, by a name held in a variable so that browser
 * bundlers leave them alone, and a missing one is reported with what to install.
 */

/** A Node package the call needs is not installed (or cannot load); the message says what to run. */
export class MissingPackageError extends Error {
  override name = 'MissingPackageError';
  constructor(
    /** the npm package */
    readonly packageName: string,
    message: string,
  ) {
    super(message);
  }
}

/** Imports an optional package; throws MissingPackageError naming it and what it is needed for. */
export async function importOptional(name: string, purpose: string): Promise<unknown> {
  try {
    return await import(/* @vite-ignore */ name);
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    const missing = (e as NodeJS.ErrnoException)?.code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (package|module)/.test(why ?? '');
    throw new MissingPackageError(name, missing
      ? `${purpose} needs the '${name}' package, which is not installed: npm install ${name}`
      : `${purpose} needs the '${name}' package, which is installed but does not load (${why}); reinstalling it may help: npm install ${name}`);
  }
}
