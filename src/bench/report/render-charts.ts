import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, View } from 'vega';
import { compile } from 'vega-lite';
import type { ChartSpec } from './chart-specs.js';

/** Fonts for both renderers: vega measures text with its own estimate, resvg needs the real glyphs. */
const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

/** vega-lite -> vega -> SVG, all in this process: no browser, no canvas, no network. */
export async function renderSvg(chart: ChartSpec): Promise<string> {
  const { spec } = compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chart.title,
    background: 'white',
    config: { font: FONT, title: { anchor: 'start', fontSize: 13 } },
    ...chart.spec,
  } as typeof chart.spec);
  const view = new View(parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Where Linux and its users keep font files. */
const FONT_DIRS = [
  '/usr/share/fonts',
  '/usr/local/share/fonts',
  path.join(os.homedir(), '.local/share/fonts'),
  path.join(os.homedir(), '.fonts'),
];

function hasFontFile(dir: string): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.some((e) =>
    e.isDirectory() ? hasFontFile(path.join(dir, e.name)) : /\.(ttf|otf|ttc)$/i.test(e.name),
  );
}

/** Turns SVGs into PNGs, or says why this machine cannot. */
export type PngRenderer = { render: (svg: string) => Buffer } | { unavailable: string };

/**
 * resvg draws no text without a font, and its native binary comes from an optional dependency that a
 * platform may lack: either way the report keeps its SVGs and says why there are no PNGs.
 */
export async function pngRenderer(fontDirs: readonly string[] = FONT_DIRS): Promise<PngRenderer> {
  if (!fontDirs.some(hasFontFile)) {
    return {
      unavailable: `no font files in ${fontDirs.join(', ')}: PNGs would have no text, so only SVGs were written (install a font, e.g. apt-get install fonts-dejavu-core)`,
    };
  }
  let Resvg: typeof import('@resvg/resvg-js').Resvg;
  try {
    ({ Resvg } = await import('@resvg/resvg-js'));
  } catch (err) {
    return {
      unavailable: `@resvg/resvg-js could not be loaded (${(err as Error).message.split('\n')[0]}): only SVGs were written`,
    };
  }
  return {
    render: (svg) =>
      new Resvg(svg, {
        font: { loadSystemFonts: true, fontDirs: [...fontDirs], defaultFontFamily: 'DejaVu Sans' },
        fitTo: { mode: 'zoom', value: 2 },
      })
        .render()
        .asPng(),
  };
}
