// Debian's headless Chromium for the browser tests (browser.mjs, flychat_browser.mjs), driven by the npm
// `playwright-core` package, which downloads no browser: /usr/bin/chromium unless CHROMIUM names another binary.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// A browser with a fresh profile in `userDataDir`, and no network activity of its own (no updates, no sync).
export function launchChromium(userDataDir) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
    viewport: { width: 1000, height: 700 },
    timeout: 15000,
  });
}
