/* The app's service worker: keeps the shell so the app opens with no network, and sends the
   queued SOS and trail on Background Sync (queue.js; the page retries with backoff as well). */
'use strict';

importScripts('/static/web/app/queue.js');

const CACHE = 'ansim-app-v1';
const SHELL = [
  '/app',
  '/app/manifest.webmanifest',
  '/static/web/app/app.css',
  '/static/web/app/i18n.js',
  '/static/web/app/queue.js',
  '/static/web/app/app.js',
  '/static/web/app/icon.svg',
  '/static/web/app/icon-192.png',
  '/static/web/app/icon-512.png',
  '/static/vendor/leaflet/leaflet.js',
  '/static/vendor/leaflet/leaflet.css',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname)) return; // the API is never cached
  // Network first (a deploy shows at once), the cached shell when the network is down.
  event.respondWith((async () => {
    try {
      const fresh = await fetch(event.request);
      if (fresh.ok) (await caches.open(CACHE)).put(url.pathname, fresh.clone());
      return fresh;
    } catch (err) {
      const cached = await caches.match(url.pathname);
      if (cached) return cached;
      throw err;
    }
  })());
});

self.addEventListener('sync', (event) => {
  if (event.tag === 'ansim-outbox') {
    event.waitUntil(AnsimQueue.flush().then((done) => { if (!done) throw new Error('outbox not empty'); }));
  }
});
