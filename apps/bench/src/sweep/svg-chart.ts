/** One point of a chart: its position and the text drawn beside it (the sweep's rate or concurrency). */
export interface ChartPoint {
  readonly x: number;
  readonly y: number;
  readonly label: string;
}

export interface ChartPanel {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Drawn in order, joined by a line. */
  readonly points: readonly ChartPoint[];
}

const panelWidth = 460;
const panelHeight = 340;
const margin = { left: 70, right: 20, top: 40, bottom: 50 };

/**
 * Up to `count` round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten.
 * `niceTicks(0, 87)` is [0, 20, 40, 60, 80, 100].
 */
export function niceTicks(low: number, high: number, count = 5): number[] {
  if (!(high > low)) {
    const center = Number.isFinite(low) ? low : 0;
    return niceTicks(center === 0 ? 0 : center - Math.abs(center) / 2, center === 0 ? 1 : center + Math.abs(center) / 2, count);
  }
  const rough = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= rough)!;
  const ticks: number[] = [];
  const first = Math.floor(low / step);
  // Up to the first tick at or above `high`, so the axis covers every point.
  for (let index = first; ticks.length < 2 || ticks.at(-1)! < high; index++) ticks.push(Number((index * step).toPrecision(12)));
  return ticks;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function formatTick(value: number): string {
  return Math.abs(value) >= 1000 || Number.isInteger(value) ? String(Math.round(value)) : String(Number(value.toPrecision(3)));
}

function panelSvg(panel: ChartPanel, offsetX: number, offsetY: number): string {
  const plotWidth = panelWidth - margin.left - margin.right;
  const plotHeight = panelHeight - margin.top - margin.bottom;
  const xs = panel.points.map((point) => point.x);
  const ys = panel.points.map((point) => point.y);
  const xTicks = niceTicks(0, Math.max(0, ...xs));
  const yTicks = niceTicks(0, Math.max(0, ...ys));
  const xMax = xTicks.at(-1)!;
  const yMax = yTicks.at(-1)!;
  const x = (value: number) => offsetX + margin.left + (value / xMax) * plotWidth;
  const y = (value: number) => offsetY + margin.top + plotHeight - (value / yMax) * plotHeight;
  const parts: string[] = [];
  parts.push(`<text x="${offsetX + panelWidth / 2}" y="${offsetY + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(panel.title)}</text>`);
  for (const tick of yTicks) {
    parts.push(`<line x1="${x(0)}" x2="${x(xMax)}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${x(0) - 6}" y="${y(tick) + 4}" text-anchor="end" font-size="11">${formatTick(tick)}</text>`);
  }
  for (const tick of xTicks) {
    parts.push(`<line x1="${x(tick)}" x2="${x(tick)}" y1="${y(0)}" y2="${y(yMax)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${x(tick)}" y="${y(0) + 16}" text-anchor="middle" font-size="11">${formatTick(tick)}</text>`);
  }
  parts.push(`<rect x="${x(0)}" y="${y(yMax)}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#555"/>`);
  parts.push(`<text x="${x(xMax / 2)}" y="${offsetY + panelHeight - 10}" text-anchor="middle" font-size="12">${escapeXml(panel.xLabel)}</text>`);
  const yLabelX = offsetX + 16;
  const yLabelY = offsetY + margin.top + plotHeight / 2;
  parts.push(`<text x="${yLabelX}" y="${yLabelY}" text-anchor="middle" font-size="12" transform="rotate(-90 ${yLabelX} ${yLabelY})">${escapeXml(panel.yLabel)}</text>`);
  if (panel.points.length > 0) {
    const path = panel.points.map((point) => `${x(point.x).toFixed(1)},${y(point.y).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${path}" fill="none" stroke="#1f6fb2" stroke-width="2"/>`);
    for (const point of panel.points) {
      parts.push(`<circle cx="${x(point.x).toFixed(1)}" cy="${y(point.y).toFixed(1)}" r="4" fill="#1f6fb2"/>`);
      parts.push(`<text x="${(x(point.x) + 6).toFixed(1)}" y="${(y(point.y) - 6).toFixed(1)}" font-size="10" fill="#333">${escapeXml(point.label)}</text>`);
    }
  }
  return parts.join('\n');
}

/** Panels side by side under a title, as a standalone SVG document. */
export function chartSvg(title: string, panels: readonly ChartPanel[], footnote = ''): string {
  const width = panelWidth * panels.length;
  const height = panelHeight + 40 + (footnote === '' ? 0 : 20);
  const body = panels.map((panel, index) => panelSvg(panel, index * panelWidth, 30)).join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(title)}</text>`,
    body,
    footnote === '' ? '' : `<text x="${width / 2}" y="${height - 8}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(footnote)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
