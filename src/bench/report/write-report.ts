import fs from 'node:fs/promises';
import path from 'node:path';
import { analyse } from './analysis.js';
import { chartSpecs } from './chart-specs.js';
import { checkGoals } from './goals.js';
import { type ChartLink, renderMarkdown } from './markdown.js';
import { pngRenderer, renderSvg } from './render-charts.js';
import type { PhysicalLimits } from '../physical-limits.js';
import { loadResults } from './results-file.js';

/** Charts live next to results.md, so that its links stay relative wherever the folder goes. */
export const CHARTS_DIR = 'charts';

export interface WrittenReport {
  markdownFile: string;
  /** Every chart file written, SVG and PNG. */
  charts: string[];
  /** Why no PNGs were written, when none were. */
  pngUnavailable: string | null;
}

export interface ReportOptions {
  /**
   * This machine's rates, measured now, for a results file whose run ended before it measured them
   * (interrupted): results.md says where they come from. Ignored when the file has its own.
   */
  limitsNow?: () => PhysicalLimits;
}

/** `<outDir>/results.md` and `<outDir>/charts/*.svg|png` from one results file of `constmig bench`. */
export async function writeReport(
  resultsFile: string,
  outDir: string,
  options: ReportOptions = {},
): Promise<WrittenReport> {
  const results = await loadResults(resultsFile);
  let limitsMeasuredByReport = false;
  if (!results.machine.limits && options.limitsNow) {
    results.machine.limits = options.limitsNow();
    limitsMeasuredByReport = true;
  }
  const analysis = analyse(results);
  const chartsDir = path.join(outDir, CHARTS_DIR);
  await fs.mkdir(chartsDir, { recursive: true });
  const png = await pngRenderer();
  const written: string[] = [];
  const links: ChartLink[] = [];
  for (const chart of chartSpecs(analysis)) {
    const svg = await renderSvg(chart);
    const svgFile = path.join(chartsDir, `${chart.name}.svg`);
    await fs.writeFile(svgFile, svg);
    written.push(svgFile);
    let pngLink: string | null = null;
    if ('render' in png) {
      const pngFile = path.join(chartsDir, `${chart.name}.png`);
      await fs.writeFile(pngFile, png.render(svg));
      written.push(pngFile);
      pngLink = `${CHARTS_DIR}/${chart.name}.png`;
    }
    links.push({ title: chart.title, svg: `${CHARTS_DIR}/${chart.name}.svg`, png: pngLink });
  }
  const pngUnavailable = 'unavailable' in png ? png.unavailable : null;
  const markdownFile = path.join(outDir, 'results.md');
  await fs.writeFile(
    markdownFile,
    renderMarkdown({
      analysis,
      goals: checkGoals(analysis),
      charts: links,
      resultsFile,
      pngUnavailable,
      limitsMeasuredByReport,
    }),
  );
  return { markdownFile, charts: written, pngUnavailable };
}
