import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where an addon built by scripts/build-native.sh lives: build/Release/<file> under the package root
 * (the folder holding binding.gyp), found from this module whether it runs from dist/src/native (built)
 * or src/native (sources).
 */
export function builtAddonPath(file: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return join(dir, 'build', 'Release', file);
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'build', 'Release', file);
}

/** Why an addon is not at `path`: its build failed (the log says why) or it was never built. */
export function missingAddonHint(path: string): string {
  const log = join(dirname(dirname(path)), 'native-build.log');
  return existsSync(log)
    ? `the build failed (see ${log})`
    : 'it was not built (npm ci runs scripts/build-native.sh; CONSTMIG_SKIP_NATIVE=1 skips it)';
}

export type AddonLoad<T> = { ok: true; addon: T; path: string } | { ok: false; reason: string };

/**
 * Loads a built addon, or the one `process.env[overrideEnv]` names; `{ ok: false, reason }` says why
 * it is not there (missing, its build failed, or it does not load on this Node).
 */
export function loadAddon<T>(file: string, label: string, overrideEnv: string): AddonLoad<T> {
  const override = process.env[overrideEnv];
  const path = override || builtAddonPath(file);
  if (!existsSync(path)) {
    // A path given by hand says nothing about the build.
    const why = override ? ` (set by ${overrideEnv})` : `: ${missingAddonHint(path)}`;
    return { ok: false, reason: `the ${label} addon is missing at ${path}${why}` };
  }
  try {
    return { ok: true, addon: createRequire(import.meta.url)(path) as T, path };
  } catch (err) {
    return { ok: false, reason: `the ${label} addon at ${path} does not load: ${(err as Error).message}` };
  }
}

/** One implementation chosen: the addon's where it loads, else the fallback, and why. */
export interface Chosen<T> {
  impl: T;
  why: string;
}

/**
 * Chooses between an addon-backed implementation and its fallback: the fallback when
 * `process.env[forceEnv] === forceValue` (for comparisons and to test it) or when the addon does not
 * load (the reason says why), else the addon's.
 */
export function chooseImplementation<A, T>(options: {
  forceEnv: string;
  forceValue: string;
  load: () => AddonLoad<A>;
  native: (addon: A) => T;
  fallback: T;
  label: string;
}): Chosen<T> {
  if (process.env[options.forceEnv] === options.forceValue) {
    return { impl: options.fallback, why: `${options.forceEnv}=${options.forceValue}` };
  }
  const load = options.load();
  return load.ok
    ? { impl: options.native(load.addon), why: `the ${options.label} addon loaded` }
    : { impl: options.fallback, why: load.reason };
}
