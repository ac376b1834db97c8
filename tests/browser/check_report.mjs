// Renders report.html in Debian's chromium (playwright-core, no downloaded browser) and prints what a reader
// sees: every chart bar with its numbers and drawn height, every table's cells, the totals, and each network
// request the page made (a self-contained page makes none but its own file).
// Usage: node check_report.mjs /abs/path/report.html /abs/path/screenshot.png
import { launch } from './launch.mjs';

const [, , file, shot] = process.argv;
const browser = await launch();
try {
  const page = await browser.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto('file://' + file);
  const bars = await page.$$eval('svg rect.bar', (els) => els.map((e) => ({
    chart: e.closest('svg').id, group: e.dataset.group, series: e.dataset.series, value: Number(e.dataset.value),
    drawn: e.getBoundingClientRect().height,
  })));
  const tables = await page.$$eval('table', (ts) => Object.fromEntries(ts.map((t) => [t.id,
    [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent))])));
  const totals = await page.$$eval('.totals span', (els) => els.map((e) => e.textContent));
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ requests, bars, tables, totals }));
} finally {
  await browser.close();
}
