/* The app's outbox in IndexedDB, shared by the page and the service worker (importScripts):
   a queued SOS is sent with its own client_alert_id until a 2xx (the server keeps one incident
   however many times it arrives), and the trail's points, each with its captured_at, go in
   batches once the incident is known. */
'use strict';

const AnsimQueue = (() => {
  const DB = 'ansim-app';
  const BATCH = 500; // the API's limit per POST /v1/alerts/{id}/locations
  let dbPromise = null;

  function open() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB, 1);
        req.onupgradeneeded = () => {
          const db = req.result;
          db.createObjectStore('kv');
          db.createObjectStore('sos', { keyPath: 'client_alert_id' });
          db.createObjectStore('trail', { autoIncrement: true });
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return dbPromise;
  }

  async function tx(store, mode, work) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const t = db.transaction(store, mode);
      const result = work(t.objectStore(store));
      t.oncomplete = () => resolve(result && 'result' in result ? result.result : result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  }

  const get = (key) => tx('kv', 'readonly', (s) => s.get(key));
  const set = (key, value) => tx('kv', 'readwrite', (s) => s.put(value, key));
  const del = (key) => tx('kv', 'readwrite', (s) => s.delete(key));

  async function entries(store, limit) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const out = [];
      const req = db.transaction(store, 'readonly').objectStore(store).openCursor();
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor || (limit && out.length >= limit)) return resolve(out);
        out.push({ key: cursor.key, value: cursor.value });
        cursor.continue();
      };
      req.onerror = () => reject(req.error);
    });
  }

  function announce(message) {
    try {
      const channel = new BroadcastChannel('ansim-app');
      channel.postMessage(message);
      channel.close();
    } catch (err) { /* no BroadcastChannel: the page polls its own state */ }
  }

  async function post(path, token, body) {
    try {
      const res = await fetch(path, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
        cache: 'no-store',
      });
      let data = null;
      try { data = await res.json(); } catch (err) { data = null; }
      return { ok: res.ok, status: res.status, data };
    } catch (err) {
      return { ok: false, status: 0, data: null };
    }
  }

  const queueSos = (body) => tx('sos', 'readwrite', (s) => s.put(body));
  const queuePoint = (point) => tx('trail', 'readwrite', (s) => s.add(point));
  const pendingSos = async () => (await entries('sos')).map((e) => e.value);
  const pendingPoints = async () => (await entries('trail')).length;

  let flushing = null;
  /** Send what is queued; true when nothing is left. One flush at a time per context. */
  function flush() {
    if (!flushing) flushing = doFlush().finally(() => { flushing = null; });
    return flushing;
  }

  async function doFlush() {
    const token = await get('token');
    if (!token) return true;
    let left = false;
    for (const body of await pendingSos()) {
      const res = await post('/v1/alerts', token, body);
      if (res.ok) {
        await tx('sos', 'readwrite', (s) => s.delete(body.client_alert_id));
        const alert = {
          client_alert_id: body.client_alert_id,
          incident_id: res.data.incident_id,
          received_at: res.data.received_at,
          status: res.data.status,
        };
        const current = await get('alert');
        if (!current || current.client_alert_id === body.client_alert_id || !current.incident_id) await set('alert', alert);
        announce({ type: 'sos-received', alert, response: res.data });
      } else if (res.status === 401) {
        await tx('sos', 'readwrite', (s) => s.delete(body.client_alert_id));
        announce({ type: 'sos-refused', status: res.status });
      } else {
        left = true; // offline, 5xx, 429: the same body again later
      }
    }
    const alert = await get('alert');
    if (alert && alert.incident_id) {
      for (;;) {
        const batch = await entries('trail', BATCH);
        if (!batch.length) break;
        const res = await post(`/v1/alerts/${alert.incident_id}/locations`, token, { points: batch.map((e) => e.value) });
        if (res.ok || res.status === 422 || res.status === 404) {
          // 422/404: a batch the server will never take; keep the queue moving.
          await tx('trail', 'readwrite', (s) => s.delete(IDBKeyRange.bound(batch[0].key, batch[batch.length - 1].key)));
          announce({ type: 'trail-sent', stored: res.data && res.data.stored, count: batch.length });
        } else {
          left = true;
          break;
        }
      }
    } else if (await pendingPoints()) {
      left = true;
    }
    return !left;
  }

  async function clearTrail() { await tx('trail', 'readwrite', (s) => s.clear()); }
  async function reset() {
    await tx('sos', 'readwrite', (s) => s.clear());
    await clearTrail();
    await tx('kv', 'readwrite', (s) => s.clear());
  }

  return { get, set, del, queueSos, queuePoint, pendingSos, pendingPoints, flush, clearTrail, reset, announce };
})();
