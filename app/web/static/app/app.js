/* The app for women (docs/app.md): SOS by a held or tapped button or by shaking the phone, a
   countdown that cancels without a PIN, an outbox that survives a bad network (queue.js, with
   the service worker's Background Sync), the trail, who is coming, "walk me home" (the
   safe-return API, docs/safe-return.md), sign-in by a texted code, and her settings. The phone
   API (docs/api.md) is its only back end. */
'use strict';

(() => {
  const I = AnsimI18n;
  const Q = AnsimQueue;
  const $ = (id) => document.getElementById(id);
  const t = I.t;
  const CLOSED = new Set(['resolved', 'false_alarm']);
  const POLL_MS = 3000;
  const HOLD_MS = 1000;
  const TRAIL_FLUSH_MS = 5000;
  // After any cancel the trail goes on, silently, as for an open alert (docs/api.md).
  const TRAIL_AFTER_CANCEL_MS = 30 * 60 * 1000;
  const DEFAULTS = { hold: true, silent: false, countdown: 3, shake: true, shakeThreshold: 25, shakeCount: 3 };

  const state = {
    token: null,
    settings: { ...DEFAULTS, ...JSON.parse(localStorage.getItem('ansim.app.settings') || '{}') },
    view: null,
    alert: null, // {client_alert_id, incident_id, received_at, status}
    fix: null,
    battery: null,
    watchId: null,
    trailUntil: 0,
    retryMs: 1000,
    retryTimer: null,
    pollTimer: null,
    countdownTimer: null,
    lastFlush: 0,
    help: null,
    walk: null, // {session_id, expected_arrival_at, destination, ended_at, shown}
    walkPoints: [],
    walkPollTimer: null,
    dest: null, // {lat, lon, label}
    sent: [], // what the outbox reported sending, for the tests
  };
  window.ansimApp = state;

  // --- views and language -------------------------------------------------------------------
  function show(view) {
    state.view = view;
    for (const node of document.querySelectorAll('main > section')) node.hidden = node.id !== `view-${view}`;
    $('tabs').hidden = !['home', 'walk', 'settings'].includes(view);
    for (const tab of $('tabs').querySelectorAll('[data-view]')) {
      if (tab.dataset.view === view) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    $('dim').hidden = !(state.settings.silent && ['countdown', 'alert'].includes(view));
    if (view === 'settings') loadSettings();
    if (view === 'alert') setTimeout(() => map.invalidateSize(), 0);
    if (view === 'walk') showWalk();
  }

  function setLang(lang) {
    I.lang = lang;
    localStorage.setItem('ansim.app.lang', lang);
    $('lang-ko').setAttribute('aria-pressed', String(lang === 'ko'));
    $('lang-en').setAttribute('aria-pressed', String(lang === 'en'));
    I.apply();
    renderDynamic();
  }
  $('lang-ko').addEventListener('click', () => setLang('ko'));
  $('lang-en').addEventListener('click', () => setLang('en'));

  function renderDynamic() {
    const s = state.settings;
    $('sos-hint').textContent = t(s.hold ? 'sos.holdHint' : 'sos.tapHint');
    // The screen reader name starts with what is on the button (WCAG 2.5.3), then says what it does.
    $('sos').setAttribute('aria-label', `SOS ${$('sos-hint').textContent}. ${t('sos.label')}`);
    $('shake-state').textContent = s.shake ? t('shake.on', { count: s.shakeCount }) : t('shake.off');
    if (state.alert) renderAlert();
    if (state.cancelledAt) $('cancelled-at').textContent = t('cancelled.at', { time: I.time(state.cancelledAt) });
    if (state.view === 'walk') showWalk();
  }

  function saveSettings() {
    localStorage.setItem('ansim.app.settings', JSON.stringify(state.settings));
    renderDynamic();
  }

  // --- API ----------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${state.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
      let data = null;
      if (res.status !== 204) { try { data = await res.json(); } catch (err) { data = null; } }
      return { ok: res.ok, status: res.status, data, headers: res.headers };
    } catch (err) {
      return { ok: false, status: 0, data: null, headers: new Headers() };
    }
  }

  // --- sign-in: a code texted to her phone (or read out by an operator), or a token ----------
  function signinState(key, params, error) {
    $('signin-state').textContent = key ? t(key, params) : '';
    $('signin-state').className = error ? 'error' : '';
  }

  async function signedIn(token) {
    await Q.set('token', token); // on this device only
    state.token = token;
    for (const id of ['signin-token', 'signin-code']) $(id).value = '';
    signinState('');
    show('home');
  }

  async function askCode() {
    const res = await api('POST', '/v1/auth/member/code', { phone: $('signin-phone').value.trim() });
    if (res.ok) {
      $('verify-form').hidden = false;
      signinState('signin.sent', { minutes: Math.round(res.data.expires_in_s / 60) });
      $('signin-code').focus();
    } else if (res.status === 429) {
      const after = Number(res.headers.get('Retry-After')) || 600;
      signinState('signin.tooMany', { time: I.time(new Date(Date.now() + after * 1000).toISOString()) }, true);
    } else signinState(res.status === 0 ? 'signin.offline' : 'settings.failed', { detail: res.status }, true);
  }
  $('code-form').addEventListener('submit', (ev) => { ev.preventDefault(); askCode(); });
  $('signin-again').addEventListener('click', askCode);

  $('verify-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const res = await api('POST', '/v1/auth/member/token', {
      phone: $('signin-phone').value.trim(), code: $('signin-code').value.trim(), label: 'app',
    });
    if (res.ok) { await signedIn(res.data.token); return; }
    $('signin-code').value = '';
    if (res.status === 429) {
      const after = Number(res.headers.get('Retry-After')) || 600;
      signinState('signin.tooMany', { time: I.time(new Date(Date.now() + after * 1000).toISOString()) }, true);
    } else signinState(res.status === 0 ? 'signin.offline' : 'signin.codeInvalid', {}, true);
  });

  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('signin-token').value.trim();
    state.token = token;
    const res = await api('GET', '/v1/me');
    if (!res.ok) {
      state.token = null;
      signinState(res.status === 0 ? 'signin.offline' : 'signin.invalid', {}, true);
      return;
    }
    await signedIn(token);
  });

  // --- SOS: the button ------------------------------------------------------------------------
  let holdTimer = null;
  const sosButton = $('sos');
  function holdStart(ev) {
    if (!state.settings.hold || ev.button > 0) return;
    holdEnd();
    sosButton.classList.add('holding');
    holdTimer = setTimeout(() => { holdEnd(); trigger('button'); }, HOLD_MS);
  }
  function holdEnd() {
    clearTimeout(holdTimer);
    holdTimer = null;
    sosButton.classList.remove('holding');
  }
  sosButton.addEventListener('pointerdown', holdStart);
  for (const type of ['pointerup', 'pointerleave', 'pointercancel']) sosButton.addEventListener(type, holdEnd);
  sosButton.addEventListener('contextmenu', (ev) => ev.preventDefault());
  sosButton.addEventListener('click', (ev) => {
    // A tap in tap mode; a keyboard or screen reader activation (detail 0) in either mode.
    if (!state.settings.hold || ev.detail === 0) trigger('button');
  });

  // --- SOS: shaking ---------------------------------------------------------------------------
  const peaks = [];
  function onMotion(ev) {
    const s = state.settings;
    if (!s.shake || state.view !== 'home') return;
    const a = ev.accelerationIncludingGravity || ev.acceleration;
    if (!a) return;
    const g = Math.hypot(a.x || 0, a.y || 0, a.z || 0);
    const now = performance.now();
    if (g < s.shakeThreshold) return;
    if (peaks.length && now - peaks[peaks.length - 1] < 80) return; // one peak, not one per sample
    peaks.push(now);
    while (peaks.length && now - peaks[0] > 2000) peaks.shift();
    if (peaks.length >= s.shakeCount) {
      peaks.length = 0;
      trigger('shake');
    }
  }
  window.addEventListener('devicemotion', onMotion);
  if (typeof DeviceMotionEvent !== 'undefined' && typeof DeviceMotionEvent.requestPermission === 'function') {
    // iOS asks for motion access, and only from a tap.
    $('shake-permission').hidden = false;
    $('shake-permission').addEventListener('click', () => DeviceMotionEvent.requestPermission().catch(() => {}));
  }

  // --- SOS: countdown, then the outbox ------------------------------------------------------------
  function trigger(how) {
    if (!state.token || !['home'].includes(state.view)) return;
    startTrail();
    const seconds = Math.max(0, Math.round(Number(state.settings.countdown) || 0));
    if (!seconds) { send(how); return; }
    let left = seconds;
    $('countdown-n').textContent = String(left);
    show('countdown');
    $('countdown-cancel').focus();
    buzz();
    state.countdownTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(state.countdownTimer);
        send(how);
      } else {
        $('countdown-n').textContent = String(left);
        buzz();
      }
    }, 1000);
  }

  function buzz() {
    if (!state.settings.silent && navigator.vibrate) navigator.vibrate(150);
  }

  $('countdown-cancel').addEventListener('click', () => {
    clearInterval(state.countdownTimer);
    stopTrail(); // nothing was sent: nothing to follow
    show('home');
  });

  async function send(how) {
    const body = { client_alert_id: uuid4(), trigger: how, silent: !!state.settings.silent };
    if (state.fix) body.location = state.fix;
    if (state.battery !== null) body.battery_pct = state.battery;
    state.alert = { client_alert_id: body.client_alert_id, incident_id: null, received_at: null, status: 'sending' };
    state.help = null;
    state.cancelledAt = null;
    await Q.clearTrail(); // the fix rides in the SOS; later points follow it
    await Q.set('alert', state.alert);
    await Q.queueSos(body);
    show('alert');
    renderAlert();
    kick();
  }

  function uuid4() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** Flush the outbox; while something is left, retry with backoff and ask for a Background Sync. */
  async function kick() {
    clearTimeout(state.retryTimer);
    state.lastFlush = Date.now();
    const done = await Q.flush();
    await refreshAlert();
    if (done) { state.retryMs = 1000; return; }
    try {
      const reg = await navigator.serviceWorker?.ready;
      if (reg && reg.sync) await reg.sync.register('ansim-outbox');
    } catch (err) { /* no Background Sync: the timer below does it */ }
    state.retryTimer = setTimeout(kick, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 30000);
  }
  window.addEventListener('online', () => { state.retryMs = 1000; kick(); });

  async function refreshAlert() {
    const saved = await Q.get('alert');
    if (!saved || !state.alert || saved.client_alert_id !== state.alert.client_alert_id) return;
    const wasSending = !state.alert.incident_id;
    state.alert = { ...state.alert, ...saved };
    if (wasSending && state.alert.incident_id) {
      renderAlert();
      poll();
    }
  }

  try {
    new BroadcastChannel('ansim-app').onmessage = (ev) => {
      const m = ev.data || {};
      if (m.type === 'sos-received' && state.alert && m.alert.client_alert_id === state.alert.client_alert_id) {
        if (!state.help) state.help = { nearest_safe_places: m.response.nearest_safe_places, police_acknowledged: false, responders: [] };
        refreshAlert();
      } else if (m.type === 'trail-sent') {
        state.sent.push(m);
      }
    };
  } catch (err) { /* refreshAlert after each flush covers it */ }

  // --- the trail ---------------------------------------------------------------------------------
  function startTrail(until = Infinity) {
    state.trailUntil = until;
    watch();
  }
  function watch() {
    navigator.getBattery?.().then((b) => { state.battery = Math.round(b.level * 100); }).catch(() => {});
    if (state.watchId !== null || !navigator.geolocation) return;
    state.watchId = navigator.geolocation.watchPosition(onFix, () => {}, { enableHighAccuracy: true, maximumAge: 5000 });
  }
  function stopTrail() {
    state.trailUntil = 0;
    if (state.walk) return; // the walk keeps its own trail going
    if (state.watchId !== null) navigator.geolocation.clearWatch(state.watchId);
    state.watchId = null;
  }
  async function onFix(pos) {
    const point = {
      lat: pos.coords.latitude,
      lon: pos.coords.longitude,
      accuracy_m: pos.coords.accuracy,
      captured_at: new Date(pos.timestamp || Date.now()).toISOString(),
    };
    state.fix = point;
    if (state.walk) onWalkFix(point);
    if (Date.now() > state.trailUntil) { stopTrail(); return; }
    if (state.view !== 'countdown') {
      await Q.queuePoint(point);
      $('alert-accuracy').textContent = t('alert.accuracy', { m: I.distance(point.accuracy_m) });
      if (navigator.onLine && Date.now() - state.lastFlush > TRAIL_FLUSH_MS) kick();
    }
  }

  // --- what help is coming ---------------------------------------------------------------------
  const map = L.map('alert-map', { zoomControl: false, attributionControl: false }).setView([37.5665, 126.978], 15);
  const layer = L.layerGroup().addTo(map);

  async function poll() {
    clearTimeout(state.pollTimer);
    if (!state.alert || !state.alert.incident_id || state.view !== 'alert') return;
    const res = await api('GET', `/v1/alerts/${state.alert.incident_id}`);
    if (res.ok) {
      state.help = res.data;
      if (CLOSED.has(res.data.status)) { finish(); return; }
      renderAlert();
    }
    state.pollTimer = setTimeout(poll, POLL_MS);
  }

  function direction(from, to) {
    const rad = Math.PI / 180;
    const y = Math.sin((to.lon - from.lon) * rad) * Math.cos(to.lat * rad);
    const x = Math.cos(from.lat * rad) * Math.sin(to.lat * rad)
      - Math.sin(from.lat * rad) * Math.cos(to.lat * rad) * Math.cos((to.lon - from.lon) * rad);
    const deg = (Math.atan2(y, x) / rad + 360) % 360;
    return t(`dir.${['N', 'NE', 'E', 'SE', 'S', 'SW', 'W', 'NW'][Math.round(deg / 45) % 8]}`);
  }

  function renderAlert() {
    const a = state.alert;
    if (!a) return;
    $('alert-status').textContent = a.received_at ? t('alert.received', { time: I.time(a.received_at) }) : t('alert.sending');
    $('alert-status').className = a.received_at ? 'status ok' : 'status pending';
    const help = state.help;
    $('alert-police').textContent = a.received_at
      ? t(help && help.police_acknowledged ? 'alert.policeAck' : 'alert.policeWaiting') : '';
    const people = (help && help.responders) || [];
    $('alert-responders').replaceChildren(...(people.length
      ? people.map((p) => li(t('alert.responder', { name: p.name, badge: p.badge_number || '—' })))
      : [li(t('alert.nobody'), 'muted')]));
    const here = (help && help.location) || state.fix;
    const places = (help && help.nearest_safe_places) || [];
    $('alert-places').replaceChildren(...(places.length
      ? places.map((p) => li(t('alert.place', {
        name: p.name, distance: I.distance(p.distance_m), direction: here ? direction(here, p) : '',
      })))
      : [li(t('alert.noPlaces'), 'muted')]));
    layer.clearLayers();
    const points = [];
    if (here) {
      L.circleMarker([here.lat, here.lon], { radius: 8, color: '#b3122e', fillOpacity: 1 }).addTo(layer);
      points.push([here.lat, here.lon]);
    }
    for (const p of places) {
      L.circleMarker([p.lat, p.lon], { radius: 6, color: '#1b6e45', fillOpacity: 0.8 }).bindTooltip(p.name).addTo(layer);
      points.push([p.lat, p.lon]);
    }
    if (points.length) map.fitBounds(points, { padding: [20, 20], maxZoom: 17 });
  }

  function li(text, cls) {
    const node = document.createElement('li');
    node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  async function finish() {
    clearTimeout(state.pollTimer);
    stopTrail();
    state.alert = null;
    await Q.del('alert');
    show('home');
  }

  // --- cancel with the PIN (the duress PIN answers the same, and shows the same) ---------------------
  $('cancel-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const a = state.alert;
    if (!a) return;
    $('cancel-state').textContent = '';
    if (!a.incident_id) {
      // Still in the outbox: the SOS must reach the centre before it can be cancelled.
      $('cancel-state').textContent = t('alert.cancelOffline');
      return;
    }
    const res = await api('POST', `/v1/alerts/${a.incident_id}/cancel`, { pin: $('cancel-pin').value });
    $('cancel-pin').value = '';
    if (res.ok) {
      clearTimeout(state.pollTimer);
      state.cancelledAt = res.data.cancelled_at;
      state.alert = null;
      await Q.del('alert');
      // Keep the trail going, silently, whichever PIN it was: the app cannot know.
      state.trailUntil = Date.now() + TRAIL_AFTER_CANCEL_MS;
      await Q.set('alert', { ...a, status: 'cancelled' });
      $('cancelled-at').textContent = t('cancelled.at', { time: I.time(res.data.cancelled_at) });
      show('cancelled');
      $('cancelled-done').focus();
      return;
    }
    if (res.status === 403) $('cancel-state').textContent = t('alert.wrongPin');
    else if (res.status === 429) {
      const after = Number(res.headers.get('Retry-After')) || 900;
      $('cancel-state').textContent = t('alert.locked', { time: I.time(new Date(Date.now() + after * 1000).toISOString()) });
    } else $('cancel-state').textContent = t('alert.cancelOffline');
  });
  $('cancelled-done').addEventListener('click', () => show('home'));

  // --- walk me home (docs/safe-return.md) -------------------------------------------------------
  const walkMap = L.map('walk-map', { zoomControl: true, attributionControl: false }).setView([37.5665, 126.978], 15);
  const walkLayer = L.layerGroup().addTo(walkMap);
  const savedPlaces = () => JSON.parse(localStorage.getItem('ansim.app.places') || '[]');

  walkMap.on('click', (ev) => {
    if (state.walk && state.walk.shown) return;
    state.dest = { lat: ev.latlng.lat, lon: ev.latlng.lng, label: null };
    $('walk-saved').value = '';
    renderWalkForm();
  });
  $('walk-saved').addEventListener('change', () => {
    const place = savedPlaces()[Number($('walk-saved').value)];
    if (!place) return;
    state.dest = { ...place };
    $('walk-label').value = place.label;
    walkMap.setView([place.lat, place.lon], 16);
    renderWalkForm();
  });

  function inMinutes(minutes) {
    const d = new Date(Date.now() + minutes * 60000);
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  }

  /** The next time the clock shows hh:mm (today, or tomorrow once it is past). */
  function arrivalIso(hhmm) {
    const [h, m] = hhmm.split(':').map(Number);
    const d = new Date();
    d.setHours(h, m, 0, 0);
    if (d.getTime() < Date.now()) d.setDate(d.getDate() + 1);
    return d.toISOString();
  }

  function renderWalkForm() {
    const places = savedPlaces();
    const select = $('walk-saved');
    const chosen = select.value;
    select.replaceChildren(new Option(t('walk.savedNone'), ''), ...places.map((p, i) => new Option(p.label, String(i))));
    select.value = chosen;
    walkLayer.clearLayers();
    if (state.fix) L.circleMarker([state.fix.lat, state.fix.lon], { radius: 7, color: '#b3122e', fillOpacity: 1 }).addTo(walkLayer);
    if (state.dest) L.marker([state.dest.lat, state.dest.lon]).addTo(walkLayer);
    $('walk-dest').textContent = !state.dest ? t('walk.noDest')
      : state.dest.label ? t('walk.dest', { label: state.dest.label }) : t('walk.destPoint');
  }

  function showWalk() {
    const live = !!(state.walk && state.walk.shown);
    $('walk-form').hidden = live;
    $('walk-live').hidden = !live;
    if (!$('walk-arrival').value) $('walk-arrival').value = inMinutes(30);
    if (live) renderWalk(); else renderWalkForm();
    setTimeout(() => walkMap.invalidateSize(), 0);
  }

  $('walk-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('walk-form-state').textContent = '';
    if (!state.dest) { $('walk-form-state').textContent = t('walk.noDest'); return; }
    const label = $('walk-label').value.trim() || state.dest.label || null;
    const body = {
      destination: { lat: state.dest.lat, lon: state.dest.lon },
      expected_arrival_at: arrivalIso($('walk-arrival').value),
      tell_guardians: $('walk-guardians').checked,
      share_with_control_centre: $('walk-centre').checked,
    };
    if (label) body.destination_label = label;
    if (state.fix) body.origin = { lat: state.fix.lat, lon: state.fix.lon };
    if (state.battery !== null) body.battery_pct = state.battery;
    const res = await api('POST', '/v1/safe-return', body);
    if (!res.ok) {
      const name = res.data && res.data.error;
      const key = `walk.err.${name}`;
      $('walk-form-state').textContent = res.status === 0 ? t('walk.offline')
        : I.MESSAGES[I.lang][key] ? t(key) : t('walk.err.other', { detail: name || res.status });
      return;
    }
    if ($('walk-save').checked && label) {
      const places = savedPlaces().filter((p) => p.label !== label);
      places.push({ label, lat: state.dest.lat, lon: state.dest.lon });
      localStorage.setItem('ansim.app.places', JSON.stringify(places.slice(-10)));
    }
    state.walk = {
      session_id: res.data.session_id, expected_arrival_at: res.data.expected_arrival_at,
      destination: body.destination, status: 'active', ended_at: null, shown: true,
    };
    state.walkPoints = [];
    await Q.set('walk', state.walk);
    watch();
    if (state.fix) onWalkFix(state.fix);
    showWalk();
    pollWalk();
  });

  let walkFlushAt = 0;
  function onWalkFix(point) {
    const w = state.walk;
    // After the end (however it ended) the trail goes on, silently, until the expected
    // arrival: an end under duress sends it to police, a real one drops it (docs/safe-return.md).
    if (w.ended_at && Date.now() > Date.parse(w.expected_arrival_at)) { endWalkTrail(); return; }
    state.walkPoints.push(point);
    if (w.shown) $('walk-accuracy').textContent = t('alert.accuracy', { m: I.distance(point.accuracy_m) });
    if (Date.now() - walkFlushAt > TRAIL_FLUSH_MS || state.walkPoints.length === 1) flushWalk();
  }

  async function flushWalk() {
    const w = state.walk;
    if (!w || !state.walkPoints.length) return;
    walkFlushAt = Date.now();
    const points = state.walkPoints.splice(0, 500);
    const res = await api('POST', `/v1/safe-return/${w.session_id}/locations`, { points, battery_pct: state.battery ?? undefined });
    if (res.status === 0 || res.status >= 500) { state.walkPoints.unshift(...points); return; }
    if (res.ok && !w.ended_at && res.data.status === 'arrived') finishWalk('walk.arrived', new Date().toISOString());
  }

  async function pollWalk() {
    clearTimeout(state.walkPollTimer);
    const w = state.walk;
    if (!w || w.ended_at) return;
    const res = await api('GET', `/v1/safe-return/${w.session_id}`);
    if (res.ok) {
      w.status = res.data.status;
      w.check = res.data.check;
      w.expected_arrival_at = res.data.expected_arrival_at;
      if (res.data.status === 'sos' && res.data.incident_id) { walkBecameSos(res.data.incident_id); return; }
      if (res.data.status === 'arrived') { finishWalk('walk.arrived', res.data.ended_at || new Date().toISOString()); return; }
      if (res.data.status === 'ended') { finishWalk('walk.ended', res.data.ended_at || new Date().toISOString()); return; }
      if (state.view === 'walk') renderWalk();
      if (w.status === 'asking' && state.view !== 'walk') show('walk');
    }
    state.walkPollTimer = setTimeout(pollWalk, POLL_MS);
  }

  function renderWalk() {
    const w = state.walk;
    if (!w) return;
    const asking = w.status === 'asking' && !w.ended_at;
    $('walk-status').textContent = w.ended_at ? t(w.endKey, { time: I.time(w.ended_at) }) : t(asking ? 'walk.asking' : 'walk.active');
    $('walk-status').className = asking ? 'status pending' : 'status ok';
    $('walk-eta').textContent = w.ended_at ? '' : t('walk.eta', { time: I.time(w.expected_arrival_at) });
    $('walk-ok-form').hidden = !asking;
    if (asking && w.check) $('walk-ask').textContent = t('walk.ask', { time: I.time(w.check.answer_by) });
    $('walk-end-form').hidden = !!w.ended_at;
    $('walk-done').hidden = !w.ended_at;
  }

  $('walk-ok-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const w = state.walk;
    const res = await api('POST', `/v1/safe-return/${w.session_id}/ok`, { pin: $('walk-ok-pin').value });
    $('walk-ok-pin').value = '';
    if (res.ok) { w.status = 'active'; w.check = null; renderWalk(); $('walk-state').textContent = ''; return; }
    $('walk-ask').textContent = res.status === 403 ? t('alert.wrongPin') : t('walk.offline');
  });

  $('walk-end-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const w = state.walk;
    const res = await api('POST', `/v1/safe-return/${w.session_id}/end`, { pin: $('walk-end-pin').value });
    $('walk-end-pin').value = '';
    if (res.ok) { finishWalk('walk.ended', new Date().toISOString()); return; }
    $('walk-state').textContent = res.status === 403 ? t('alert.wrongPin') : t('walk.offline');
  });

  // The screen after an end is the same whichever PIN ended it; the trail goes on (onWalkFix).
  async function finishWalk(endKey, at) {
    const w = state.walk;
    clearTimeout(state.walkPollTimer);
    w.ended_at = at;
    w.endKey = endKey;
    await Q.set('walk', w);
    if (state.view === 'walk') renderWalk();
    $('walk-done').focus();
  }

  function endWalkTrail() {
    state.walk = null;
    state.walkPoints = [];
    Q.del('walk');
    if (Date.now() > state.trailUntil) stopTrail();
  }

  $('walk-done').addEventListener('click', () => {
    if (state.walk) state.walk.shown = false;
    state.dest = null;
    showWalk();
  });

  async function walkBecameSos(incidentId) {
    clearTimeout(state.walkPollTimer);
    state.walk.ended_at = new Date().toISOString();
    state.walk.endKey = 'walk.sos';
    state.walk.shown = false;
    state.alert = { client_alert_id: null, incident_id: incidentId, received_at: new Date().toISOString(), status: 'new' };
    await Q.set('alert', state.alert);
    startTrail();
    show('alert');
    renderAlert();
    poll();
  }

  // --- PIN and duress PIN (with the current PIN; the duress PIN gets the same answer) ----------
  $('pin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const [current, next, duress] = ['pin-current', 'pin-new', 'pin-duress'].map((id) => $(id).value);
    if (next === duress) { $('pin-state').textContent = t('settings.pinSame'); return; }
    const res = await api('POST', '/v1/me/pin', { current_pin: current, new_pin: next, new_duress_pin: duress });
    for (const id of ['pin-current', 'pin-new', 'pin-duress']) $(id).value = '';
    if (res.ok) $('pin-state').textContent = t('settings.pinChanged', { time: I.time(res.data.changed_at) });
    else if (res.status === 403) $('pin-state').textContent = t('alert.wrongPin');
    else if (res.status === 429) {
      const after = Number(res.headers.get('Retry-After')) || 900;
      $('pin-state').textContent = t('alert.locked', { time: I.time(new Date(Date.now() + after * 1000).toISOString()) });
    } else if (res.status === 422) $('pin-state').textContent = t('settings.pinFormat');
    else $('pin-state').textContent = t('settings.failed', { detail: res.status });
  });

  // --- settings ----------------------------------------------------------------------------------
  const FIELDS = [
    ['set-hold', 'hold', 'checked'], ['set-silent', 'silent', 'checked'], ['set-shake', 'shake', 'checked'],
    ['set-countdown', 'countdown', 'number'], ['set-shake-threshold', 'shakeThreshold', 'number'],
    ['set-shake-count', 'shakeCount', 'number'],
  ];
  for (const [id, key, kind] of FIELDS) {
    const input = $(id);
    if (kind === 'checked') input.checked = !!state.settings[key];
    else input.value = state.settings[key];
    input.addEventListener('change', () => {
      if (kind === 'checked') state.settings[key] = input.checked;
      else if (input.checkValidity() && input.value !== '') state.settings[key] = Number(input.value);
      saveSettings();
    });
  }

  async function loadSettings() {
    const res = await api('GET', '/v1/me');
    if (!res.ok) return;
    const list = res.data.guardians || [];
    $('guardians').replaceChildren(...list.map((g) => {
      const item = li(`${g.name} · ${g.phone} `);
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'link';
      remove.textContent = '×';
      remove.setAttribute('aria-label', t('settings.guardianRemove', { name: g.name }));
      remove.addEventListener('click', async () => {
        await api('DELETE', `/v1/me/guardians/${g.id}`);
        loadSettings();
      });
      item.append(remove);
      return item;
    }));
    $('guardian-add').disabled = list.length >= 5;
    if (list.length >= 5) $('guardian-state').textContent = t('settings.guardianFull');
  }

  $('guardian-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const res = await api('POST', '/v1/me/guardians', { name: $('guardian-name').value.trim(), phone: $('guardian-phone').value.trim() });
    $('guardian-state').textContent = res.ok ? '' : t(res.status === 409 ? 'settings.guardianFull' : 'settings.failed', { detail: res.status });
    if (res.ok) { $('guardian-name').value = ''; $('guardian-phone').value = ''; }
    loadSettings();
  });

  $('export').addEventListener('click', async () => {
    const res = await api('GET', '/v1/me/export');
    if (!res.ok) { $('data-state').textContent = t('settings.failed', { detail: res.status }); return; }
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([JSON.stringify(res.data, null, 2)], { type: 'application/json' }));
    link.download = 'ansim-my-data.json';
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  });

  $('erase').addEventListener('click', async () => {
    const res = await api('POST', '/v1/me/erase', { pin: $('erase-pin').value });
    $('erase-pin').value = '';
    if (res.status === 204) { await signOut(); $('signin-state').textContent = t('settings.erased'); return; }
    $('data-state').textContent = res.status === 409 ? t('settings.eraseOpen')
      : res.status === 403 ? t('alert.wrongPin') : t('settings.failed', { detail: res.status });
  });

  async function signOut() {
    stopTrail();
    clearTimeout(state.pollTimer);
    clearTimeout(state.retryTimer);
    await Q.reset();
    state.token = null;
    state.alert = null;
    state.walk = null;
    clearTimeout(state.walkPollTimer);
    show('signin');
  }
  $('signout').addEventListener('click', signOut);

  for (const tab of $('tabs').querySelectorAll('[data-view]')) tab.addEventListener('click', () => show(tab.dataset.view));

  // --- start -------------------------------------------------------------------------------------
  async function start() {
    setLang(I.pick(localStorage.getItem('ansim.app.lang')));
    if ('serviceWorker' in navigator) {
      state.sw = navigator.serviceWorker.register('/app/sw.js', { scope: '/app' }).catch(() => null);
    }
    state.token = (await Q.get('token')) || null;
    if (!state.token) { show('signin'); state.ready = true; return; }
    const walk = await Q.get('walk');
    if (walk && Date.now() < Date.parse(walk.expected_arrival_at) + 4 * 3600 * 1000) {
      state.walk = walk;
      watch();
      pollWalk();
    }
    const saved = await Q.get('alert');
    if (saved && saved.status !== 'cancelled') {
      state.alert = saved;
      show('alert');
      renderAlert();
      startTrail();
      kick();
      if (saved.incident_id) poll();
    } else {
      show('home');
      if ((await Q.pendingPoints()) || (await Q.pendingSos()).length) kick();
    }
    state.ready = true;
  }
  start();
})();
