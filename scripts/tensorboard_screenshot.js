// A screenshot of a TensorBoard page (docs/tracking_tensorboard.png), through the Chrome DevTools protocol:
// TensorBoard keeps "ignore outliers in chart scaling" in localStorage, which a plain --screenshot cannot turn
// off, and with it on a curve that starts at 100 and then stays at 0 is drawn without its start.
// node --experimental-websocket scripts/tensorboard_screenshot.js DEBUG_PORT URL OUT.png
// (Chromium runs headless with --remote-debugging-port=DEBUG_PORT; TensorBoard on 127.0.0.1:6006.)
const [port, url, out] = process.argv.slice(2);
const fs = require("fs");
(async () => {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const page = targets.find(t => t.type === "page");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  let id = 0; const pending = {};
  ws.onmessage = (m) => { const d = JSON.parse(m.data); if (d.id && pending[d.id]) { pending[d.id](d); delete pending[d.id]; } };
  const send = (method, params = {}) => new Promise(r => { const i = ++id; pending[i] = r; ws.send(JSON.stringify({ id: i, method, params })); });
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  await new Promise(r => ws.onopen = r);
  await send("Emulation.setDeviceMetricsOverride", { width: 1400, height: 860, deviceScaleFactor: 1, mobile: false });
  await send("Page.navigate", { url: "http://127.0.0.1:6006/" });
  await sleep(4000);
  await send("Runtime.evaluate", { expression: "localStorage.setItem('_ignoreYOutliers', 'false'); localStorage.setItem('_smoothingWeight', '0'); 1" });
  await send("Page.navigate", { url });
  await sleep(8000);
  const shot = await send("Page.captureScreenshot", { format: "png" });
  fs.writeFileSync(out, Buffer.from(shot.result.data, "base64"));
  ws.close();
  process.exit(0);
})();
