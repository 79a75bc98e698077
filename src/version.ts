/**
 * The library's version (package.json's; a test keeps them equal). Stored kernel-choice tables
 * carry it: a table tuned by another version is not used, since its kernels may differ.
 */
export const LIBRARY_VERSION = '0.1.0';
