/**
 * A hand-written SVG: one panel per step, one row per contender, every
 * sample as a dot on the panel's own linear axis, p50 and p95 as ticks.
 */
import type { ShownContender } from './contender.js';
import { percentile, type Recorder } from './results.js';

const W = 900;
const LABEL_W = 190;
const ROW_H = 22;
const PANEL_PAD = 46;
const COLORS = ['#1f77b4', '#7f7f7f', '#d62728', '#2ca02c', '#9467bd', '#8c564b'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const pow = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= v) return m * pow;
  return 10 * pow;
}

const fmt = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s` : `${ms.toFixed(0)} ms`);

export function renderSvg(rec: Recorder, contenders: readonly ShownContender[], title: string, subtitle: string): string {
  const parts: string[] = [];
  let y = 62;
  const plotW = W - LABEL_W - 30;
  for (const step of rec.order) {
    const rows = contenders.filter((c) => rec.get(c.name, step));
    if (rows.length === 0) continue;
    const max = niceMax(Math.max(0, ...rows.flatMap((c) => rec.get(c.name, step)!.samples)));
    const x = (v: number): number => LABEL_W + (v / max) * plotW;
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(step)}</text>`);
    y += 10;
    const top = y;
    rows.forEach((c) => {
      const r = rec.get(c.name, step)!;
      const cy = y + ROW_H / 2;
      const color = COLORS[contenders.indexOf(c) % COLORS.length];
      const failed = r.failures.length > 0 ? ` (${r.failures.length} failed)` : '';
      parts.push(`<text x="10" y="${cy + 4}" font-size="11">${esc(c.name + failed)}</text>`);
      r.samples.forEach((s, k) => {
        const jitter = ((k * 7) % 11) - 5;
        parts.push(`<circle cx="${x(s).toFixed(1)}" cy="${(cy + jitter * 0.8).toFixed(1)}" r="2.5" fill="${color}" fill-opacity="0.55"/>`);
      });
      for (const [p, h] of [[50, 8], [95, 5]] as const) {
        const v = percentile(r.samples, p);
        if (v !== undefined) parts.push(`<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${cy - h}" y2="${cy + h}" stroke="black" stroke-width="${p === 50 ? 2 : 1}"><title>p${p} ${fmt(v)}</title></line>`);
      }
      y += ROW_H;
    });
    parts.push(`<line x1="${LABEL_W}" x2="${LABEL_W + plotW}" y1="${y}" y2="${y}" stroke="#999"/>`);
    for (let t = 0; t <= 4; t++) {
      const v = (max * t) / 4;
      parts.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${top}" y2="${y}" stroke="#eee"/><text x="${x(v)}" y="${y + 14}" font-size="10" text-anchor="middle">${fmt(v)}</text>`);
    }
    y += PANEL_PAD;
  }
  const legend = `<text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text><text x="10" y="38" font-size="10">${esc(subtitle)}</text><text x="10" y="52" font-size="10">dots: samples; thick tick: p50; thin tick: p95; each panel has its own axis</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>${legend}${parts.join('')}</svg>\n`;
}
