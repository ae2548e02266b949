// Scenarios driven by server/tests/clients.rs: unmodified puppeteer-core and
// playwright-core clients talking to a browserpool-server. They never launch or
// download a browser: every browser comes through the server.
//
// Usage: node scenario.mjs <scenario> '<json options>'
// Prints one JSON object per line; the last line is the result.
import { writeSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

const [scenario, raw] = process.argv.slice(2);
const opt = JSON.parse(raw ?? '{}');
// Written synchronously, so that a process.exit() right after cannot lose the line.
const say = (o) => writeSync(1, `${JSON.stringify(o)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A referenced timer: it also keeps node from exiting quietly (status 0, no result) if
// every pending promise is waiting on a socket that closed without settling it.
const guard = setTimeout(() => { say({ error: `scenario ${scenario} hung` }); process.exit(3); }, opt.limitMs ?? 240000);

const headers = opt.token ? { Authorization: `Bearer ${opt.token}` } : undefined;
const connect = (browserWSEndpoint) =>
  puppeteer.connect({ browserWSEndpoint, headers, defaultViewport: { width: 1100, height: 700 } });
const sessions = async () => (await fetch(`${opt.http}/sessions`, { headers })).json();

async function work(browser, title) {
  const page = await browser.newPage();
  await page.goto(`data:text/html,<title>${title}</title><p id=x>hello</p>`);
  const sum = await page.evaluate(() => 1 + 1);
  const text = await page.$eval('#x', (e) => e.textContent);
  return { page, sum, text, title: await page.title() };
}

async function main() {
  switch (scenario) {
    case 'basic': {
      const browser = await connect(`${opt.ws}/`);
      const r = await work(browser, 'basic');
      const mine = (await sessions())[0];
      say({ id: mine.id, dir: mine.dir, sum: r.sum, text: r.text, title: r.title });
      if (opt.end === 'close') {
        await browser.close();
        say({ ok: true, end: 'close' });
      } else if (opt.end === 'disconnect') {
        await browser.disconnect();
        say({ ok: true, end: 'disconnect' });
      } else {
        say({ ok: true, end: 'exit' });
        process.exit(0); // the socket drops with no close frame, like a crashed client
      }
      return;
    }
    case 'reconnect': {
      let browser = await connect(`${opt.ws}/`);
      await work(browser, 'keep-me');
      const first = (await sessions())[0];
      say({ id: first.id, dir: first.dir });
      await browser.disconnect();
      await sleep(opt.pauseMs ?? 300);
      browser = await connect(`${opt.ws}/devtools/browser/${first.id}`);
      const pages = await browser.pages();
      const titles = await Promise.all(pages.map((p) => p.title()));
      // Stay attached past the grace period, then use the session again.
      await sleep(opt.holdMs ?? 0);
      const again = await pages[titles.indexOf('keep-me')].evaluate(() => document.querySelector('#x').textContent);
      const after = (await sessions()).map((s) => s.id);
      await browser.close();
      say({ ok: true, id: first.id, titles, again, after });
      return;
    }
    case 'long-evaluate': {
      const browser = await connect(`${opt.ws}/`);
      const page = await browser.newPage();
      const mine = (await sessions())[0];
      say({ id: mine.id, dir: mine.dir });
      const t0 = Date.now();
      const value = await page.evaluate((ms) => new Promise((r) => setTimeout(() => r(42), ms)), opt.ms);
      say({ value, tookMs: Date.now() - t0, listed: (await sessions()).map((s) => s.id) });
      // Now idle while connected: the idle timeout reaps the session and the server
      // closes the connection.
      const t1 = Date.now();
      await new Promise((r) => browser.once('disconnected', r));
      say({ ok: true, value, idleDisconnectAfterMs: Date.now() - t1 });
      return;
    }
    case 'crowd': {
      // Where each client is; a client whose promise never settles stays listed. If
      // every one left waits on nothing (no socket, no timer), node's event loop drains:
      // `beforeExit` then names them, instead of node exiting quietly.
      const unsettled = new Map();
      process.on('beforeExit', () => {
        say({ error: 'clients never settled', unsettled: [...unsettled.entries()] });
        process.exit(4);
      });
      guard.unref();
      const attempt = async (i) => {
        const t0 = Date.now();
        let browser;
        const at = (step) => unsettled.set(i, `${step} @${Date.now() - t0}ms`);
        try {
          at('connect');
          browser = await connect(`${opt.ws}/`);
          at('work');
          const r = await work(browser, `client-${i}`);
          await sleep(opt.holdMs ?? 200);
          at('evaluate');
          const again = await r.page.evaluate(() => document.title);
          at('close');
          await browser.close();
          return { i, ok: again === `client-${i}`, ms: Date.now() - t0 };
        } catch (e) {
          try { browser?.disconnect(); } catch {}
          return { i, ok: false, error: String(e.message ?? e).slice(0, 200), ms: Date.now() - t0 };
        } finally {
          unsettled.delete(i);
        }
      };
      const results = await Promise.all(Array.from({ length: opt.clients }, (_, i) => attempt(i)));
      say({ done: true, ok: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length,
        errors: results.filter((r) => !r.ok).map((r) => r.error) });
      return;
    }
    case 'hold': {
      // Open n sessions, report them, then (optionally) run one long evaluate each.
      const browsers = [];
      for (let i = 0; i < opt.clients; i++) {
        const b = await connect(`${opt.ws}/`);
        const p = await b.newPage();
        await p.goto(`data:text/html,<title>hold-${i}</title>`);
        browsers.push({ b, p });
      }
      say({ ready: true, sessions: await sessions() });
      if (!opt.evaluateMs) {
        await sleep(1e9);
        return;
      }
      const values = await Promise.all(browsers.map(({ p }) =>
        p.evaluate((ms) => new Promise((r) => setTimeout(() => r(42), ms)), opt.evaluateMs)));
      for (const { b } of browsers) await b.close();
      say({ ok: true, values });
      return;
    }
    case 'status-page': {
      const browser = await connect(`${opt.ws}/`);
      const page = await browser.newPage();
      const url = `${opt.http}/${opt.token ? `?token=${opt.token}` : ''}`;
      await page.goto(url, { waitUntil: 'load' });
      const read = () => page.$$eval('#sessions tbody tr[data-id]', (trs) => trs.map((tr) => ({
        id: tr.dataset.id,
        owner: tr.querySelector('.owner').textContent,
        state: tr.querySelector('[data-state]').dataset.state,
        uses: Number(tr.querySelector('.uses').textContent),
        pss: tr.querySelector('.pss').textContent,
      })));
      const rows = await read();
      const api = await sessions();
      const figures = await page.$$eval('[data-figure]', (ds) => Object.fromEntries(ds.map((d) => [d.dataset.figure, d.querySelector('b').textContent])));
      // The page refreshes itself: wait for a reload and read it again.
      await page.waitForNavigation({ timeout: 10000 });
      const reloaded = (await read()).map((r) => r.id);
      if (opt.screenshot) await page.screenshot({ path: opt.screenshot, fullPage: true });
      await browser.close();
      say({ ok: true, rows, api, figures, reloaded });
      return;
    }
    case 'playwright': {
      const { chromium } = await import('playwright-core');
      const browser = await chromium.connectOverCDP(`${opt.ws}/`, { headers });
      const context = browser.contexts()[0] ?? (await browser.newContext());
      const page = await context.newPage();
      await page.goto('data:text/html,<title>pw</title><p id=x>playwright</p>');
      const text = await page.textContent('#x');
      const sum = await page.evaluate(() => 20 + 22);
      const mine = (await sessions())[0];
      await browser.close();
      say({ ok: true, id: mine.id, dir: mine.dir, text, sum, title: await page.title().catch(() => 'closed') });
      return;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

main().then(() => process.exit(0), (e) => { say({ error: String(e.stack ?? e) }); process.exit(1); });
