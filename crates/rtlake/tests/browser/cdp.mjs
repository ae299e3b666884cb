// A minimal Chrome DevTools Protocol driver over --remote-debugging-pipe (no npm packages):
// starts headless Chromium, then runs one JSON command per stdin line and answers one JSON line
// on stdout. Commands:
//   {"navigate": url}                      -> {"ok": true} once the page has loaded
//   {"eval": "expression"}                 -> {"value": result} (promises awaited)
//   {"click": "css selector"}              -> a real mouse click at the element's centre
//   {"screenshot": "file.png"}             -> writes a PNG of the viewport
// Usage: node cdp.mjs [chromium binary]
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";

const binary = process.argv[2] || "chromium";
const chrome = spawn(binary, [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
  "--no-first-run", "--no-default-browser-check", "--window-size=1400,1000", "--remote-debugging-pipe", "about:blank",
], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
const toChrome = chrome.stdio[3], fromChrome = chrome.stdio[4];

let nextId = 1;
const waiting = new Map();
const listeners = [];
let buffer = Buffer.alloc(0);
fromChrome.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  let end;
  while ((end = buffer.indexOf(0)) >= 0) {
    const msg = JSON.parse(buffer.subarray(0, end).toString("utf8"));
    buffer = buffer.subarray(end + 1);
    if (msg.id && waiting.has(msg.id)) {
      const { resolve, reject } = waiting.get(msg.id);
      waiting.delete(msg.id);
      msg.error ? reject(new Error(JSON.stringify(msg.error))) : resolve(msg.result);
    } else if (msg.method) {
      listeners.forEach((l) => l(msg));
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  toChrome.write(JSON.stringify({ id, method, params, sessionId }) + "\0");
  return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}

const { targetInfos } = await send("Target.getTargets");
const page = targetInfos.find((t) => t.type === "page");
const { sessionId } = await send("Target.attachToTarget", { targetId: page.targetId, flatten: true });
const s = (method, params) => send(method, params, sessionId);
await s("Page.enable");
await s("Runtime.enable");
const consoleErrors = [];
listeners.push((m) => {
  if (m.method === "Runtime.exceptionThrown") consoleErrors.push(m.params.exceptionDetails.text + " " + (m.params.exceptionDetails.exception?.description || ""));
});

async function evaluate(expression) {
  const r = await s("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
  if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description || r.exceptionDetails.text);
  return r.result.value;
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  let answer;
  try {
    if (cmd.navigate) {
      const loaded = new Promise((resolve) => listeners.push((m) => m.method === "Page.loadEventFired" && resolve()));
      await s("Page.navigate", { url: cmd.navigate });
      await loaded;
      answer = { ok: true };
    } else if (cmd.eval !== undefined) {
      answer = { value: await evaluate(cmd.eval) };
    } else if (cmd.click) {
      const box = await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(cmd.click)}); if (!e) return null; e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`);
      if (!box) throw new Error(`no element matches ${cmd.click}`);
      for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
        await s("Input.dispatchMouseEvent", { type, x: box.x, y: box.y, button: "left", clickCount: 1 });
      }
      answer = { ok: true };
    } else if (cmd.screenshot) {
      const { data } = await s("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
      writeFileSync(cmd.screenshot, Buffer.from(data, "base64"));
      answer = { ok: true };
    } else {
      throw new Error(`unknown command ${line}`);
    }
  } catch (e) {
    answer = { error: String(e.message || e) };
  }
  answer.console_errors = consoleErrors.splice(0);
  process.stdout.write(JSON.stringify(answer) + "\n");
}
chrome.kill();
process.exit(0);
