// Opens a page of rendered cards (Markdown rendered to HTML with raw HTML on, as an EHR may) in Debian's chromium
// (playwright-core) and prints what happened: every network request, every dialog, whether any script set the
// canary window.__ran, console errors, and which elements data could have made inside the cards.
// Usage: node check_cards.mjs /abs/path/cards.html
import { launch } from './launch.mjs';

const [, , file] = process.argv;
const browser = await launch();
try {
  const page = await browser.newPage();
  const requests = [];
  const dialogs = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  await page.goto('file://' + file, { waitUntil: 'load' });
  await page.waitForTimeout(500); // an onerror or a lazy fetch would have fired by now
  const seen = await page.evaluate(() => {
    const cards = document.querySelector('#cards');
    const forbidden = 'a,img,script,iframe,object,embed,svg,math,form,input,style,link,meta,video,audio,source,'
      + 'h1,h2,h3,h4,h5,h6,em,del,s,code,pre,ol,blockquote,table,hr';
    return {
      ran: window.__ran === undefined ? null : String(window.__ran),
      forbidden: [...cards.querySelectorAll(forbidden)].map((e) => e.outerHTML.slice(0, 200)),
      handlers: [...cards.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.name))
        .filter((n) => n.startsWith('on')),
      strong: [...cards.querySelectorAll('strong')].map((e) => e.textContent),
      cards: cards.querySelectorAll('.card').length,
    };
  });
  console.log(JSON.stringify({ requests, dialogs, ...seen }));
} finally {
  await browser.close();
}
