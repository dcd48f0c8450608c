/* The police dispatch console: live incidents over the console WebSocket (docs/dispatch.md),
   actions over REST, a map drawn from our own data. */
'use strict';

(() => {
  const { api, el, duration, clock, metres } = Ansim;
  const $ = (id) => document.getElementById(id);

  const CLOSED = new Set(['resolved', 'false_alarm', 'cancelled']);
  const STATUS_LABEL = {
    new: 'NEW', acknowledged: 'Acknowledged', responding: 'Responding', on_scene: 'On scene',
    resolved: 'Resolved', false_alarm: 'False alarm', cancelled: 'Cancelled',
  };
  const SOURCE_LABEL = { app: 'APP', button: 'BUTTON', sensor: 'SENSOR', safe_return: 'WALK HOME' };
  const SILENCE_AFTER_MS = 40000; // the server pings every 15 s: this long without a frame = dead
  const REMIND_EVERY_MS = 15000; // unacknowledged incidents beep again

  const state = {
    token: sessionStorage.getItem('ansim.console.token'),
    name: sessionStorage.getItem('ansim.console.name') || '',
    staff: null,
    incidents: new Map(),
    // Panic buttons in trouble (offline, low battery, tampered with), from the snapshot and
    // the `device` messages; a button back online stays listed for a minute.
    devices: new Map(),
    // Store phones learnt from `cancel_requested` messages, by safe place id.
    storePhones: new Map(),
    cursor: null,
    highlighted: null,
    openId: null,
    detail: null,
    nearby: null,
    ws: null,
    connected: false,
    signedOut: true,
    retry: 0,
    lastFrameAt: 0,
    // Counters the browser tests (and a curious operator) can read: window.ansimConsole.
    connects: 0,
    snapshots: 0,
    alarms: 0,
    frames: 0,
    muted: false,
    confirming: null,
  };
  window.ansimConsole = state;

  // --- sound ------------------------------------------------------------------------------
  let audio = null;
  function ensureAudio() {
    // Browsers allow an AudioContext only after a user gesture: made on the first one.
    if (!audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx) audio = new Ctx();
    }
    if (audio && audio.state === 'suspended') audio.resume().catch(() => {});
  }
  document.addEventListener('pointerdown', ensureAudio, { capture: true });
  document.addEventListener('keydown', ensureAudio, { capture: true });

  function beep(urgent) {
    if (state.muted || !audio || audio.state !== 'running') return;
    const tones = urgent ? [988, 740, 988, 740, 988, 740] : [880, 0, 880];
    let t = audio.currentTime + 0.01;
    for (const freq of tones) {
      if (freq) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = urgent ? 'sawtooth' : 'square';
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t);
        gain.gain.exponentialRampToValueAtTime(0.18, t + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.16);
        osc.connect(gain).connect(audio.destination);
        osc.start(t);
        osc.stop(t + 0.18);
      }
      t += 0.2;
    }
  }

  // --- ordering and labels ----------------------------------------------------------------
  const isUrgent = (i) => i.duress || i.escalation_level > 0 || i.unwatched;
  function rank(i) {
    if (isUrgent(i)) return 0;
    if (i.status === 'new') return zoneRaise(i) > 0 ? 0.5 : 1;
    return 2;
  }
  function sorted() {
    return [...state.incidents.values()].sort(
      (a, b) => rank(a) - rank(b) || Date.parse(b.received_at) - Date.parse(a.received_at),
    );
  }
  function badges(i) {
    const out = [];
    if (i.duress) out.push(el('span', { class: 'badge duress' }, 'DURESS'));
    if (i.escalation_level > 0) out.push(el('span', { class: 'badge escalated' }, `ESCALATED L${i.escalation_level}`));
    if (i.silent) out.push(el('span', { class: 'badge silent' }, 'SILENT'));
    if (i.unwatched) out.push(el('span', { class: 'badge escalated', title: 'No console was open for it: supervisors were paged' }, 'UNWATCHED'));
    if (i.coverage === 'unlocated') out.push(el('span', { class: 'badge coverage' }, 'UNLOCATED'));
    if (i.coverage === 'outside_city') out.push(el('span', { class: 'badge coverage' }, 'OUTSIDE THE CITY'));
    if (i.coverage === 'covering' && state.staff && !state.staff.city_wide
        && !state.staff.district_ids.includes(i.district_id)) {
      out.push(el('span', { class: 'badge coverage' }, `COVERING FOR ${i.district_name || i.district_code}`));
    }
    if (i._notifyFailed) out.push(el('span', { class: 'badge duress' }, 'NOT NOTIFIED'));
    const zone = zoneBadge(i);
    if (zone) out.push(zone);
    const note = storeNote(i);
    if (note) out.push(note);
    for (const f of i.flags || []) {
      if (['no_location', 'location_poor', 'location_stale'].includes(f)) {
        out.push(el('span', { class: 'badge flag' }, f.replace('_', ' ')));
      }
    }
    return out;
  }
  // A store's cancel is a request a dispatcher verifies; under duress nobody calls the store.
  function storeNote(i) {
    if (i.source !== 'button') return null;
    if (i.duress) {
      return el('span', { class: 'badge duress store-note', dataset: { note: 'duress' } },
        'DURESS AT THE STORE — do not call the store; send units silently');
    }
    if (!(i.flags || []).includes('cancel_requested')) return null;
    const phone = state.storePhones.get(i.safe_place_id);
    return el('span', { class: 'badge cancel-requested store-note', dataset: { note: 'cancel_requested' } },
      `Cancel requested by the store — call the store to verify${phone ? ` ☎ ${phone}` : ''}`);
  }
  function learnStorePhone(i, data) {
    const store = data && data.store;
    if (i && i.safe_place_id && store && store.phone) state.storePhones.set(i.safe_place_id, store.phone);
  }

  function deadlineText(i, now) {
    if (i.status !== 'new' || !i.ack_deadline_at) return '';
    const left = Date.parse(i.ack_deadline_at) - now;
    return left >= 0 ? `ack in ${duration(left)}` : `ACK OVERDUE ${duration(-left)}`;
  }

  // --- the list ---------------------------------------------------------------------------
  function renderList() {
    askZones();
    const list = $('incidents');
    const now = Date.now();
    const items = sorted();
    list.replaceChildren(...items.map((i) => {
      const classes = ['incident', `status-${i.status}`];
      if (isUrgent(i)) classes.push('urgent');
      if (i.id === state.highlighted) classes.push('highlighted');
      if (i.id === state.openId) classes.push('open');
      if (i._flashUntil && i._flashUntil > now) classes.push('flash');
      const deadline = deadlineText(i, now);
      return el('li', {
        class: classes.join(' '),
        role: 'option',
        id: `incident-${i.id}`,
        'aria-selected': i.id === state.highlighted ? 'true' : 'false',
        dataset: { id: i.id },
        onclick: () => { highlight(i.id); openIncident(i.id); },
      },
      el('div', { class: 'row1' },
        el('span', { class: `source source-${i.source}` }, SOURCE_LABEL[i.source] || i.source),
        el('span', { class: 'what' }, i.source === 'button' ? 'Panic button' : `SOS · ${i.trigger}`),
        el('span', { class: 'status' }, STATUS_LABEL[i.status] || i.status)),
      el('div', { class: 'row2' },
        el('span', { class: 'district' }, i.district_name || 'outside every district'),
        el('span', { class: 'age', dataset: { since: i.received_at } }, duration(now - Date.parse(i.received_at))),
        el('span', { class: deadline.startsWith('ACK OVERDUE') ? 'deadline overdue' : 'deadline', dataset: { id: i.id } }, deadline)),
      el('div', { class: 'row3' }, badges(i)));
    }));
    $('count').textContent = String(items.length);
    $('empty').hidden = items.length > 0;
    const unacked = items.filter((i) => i.status === 'new').length;
    document.title = unacked ? `(${unacked}) NEW · Ansim console` : 'Ansim · Dispatch console';
    drawIncidentMarkers(items);
  }

  function tick() {
    const now = Date.now();
    $('clock').textContent = new Date(now).toLocaleTimeString([], { hour12: false });
    for (const node of document.querySelectorAll('#incidents .age')) {
      node.textContent = duration(now - Date.parse(node.dataset.since));
    }
    for (const node of document.querySelectorAll('#incidents .deadline')) {
      const i = state.incidents.get(node.dataset.id);
      if (!i) continue;
      const text = deadlineText(i, now);
      node.textContent = text;
      node.classList.toggle('overdue', text.startsWith('ACK OVERDUE'));
    }
    if ([...state.devices.values()].some((d) => !d.problems.length && d._onlineUntil <= now)) renderDevices();
    if (state.connected && state.lastFrameAt && now - state.lastFrameAt > SILENCE_AFTER_MS) {
      state.ws.close(); // a silent drop (no pings): reconnect with the cursor
    }
  }

  function highlight(id) {
    state.highlighted = id;
    for (const node of document.querySelectorAll('#incidents .incident')) {
      const on = node.dataset.id === id;
      node.classList.toggle('highlighted', on);
      node.setAttribute('aria-selected', on ? 'true' : 'false');
      if (on) node.scrollIntoView({ block: 'nearest' });
    }
  }

  function move(step) {
    const ids = sorted().map((i) => i.id);
    if (!ids.length) return;
    const at = ids.indexOf(state.highlighted);
    const next = at < 0 ? 0 : Math.min(ids.length - 1, Math.max(0, at + step));
    highlight(ids[next]);
  }

  // --- alarms -----------------------------------------------------------------------------
  let lastAlarmAt = 0;
  function alarm(i, reason) {
    state.alarms += 1;
    lastAlarmAt = Date.now();
    i._flashUntil = Date.now() + 6000;
    const urgent = isUrgent(i);
    const banner = $('banner-new');
    banner.replaceChildren(
      el('strong', {}, urgent ? `${reason.toUpperCase()} — ` : 'NEW INCIDENT — '),
      `${SOURCE_LABEL[i.source] || i.source} in ${i.district_name || 'no district'} `,
      el('button', { type: 'button', onclick: () => { highlight(i.id); openIncident(i.id); } }, 'Open (Enter)'),
    );
    banner.classList.toggle('urgent', urgent);
    banner.hidden = false;
    if (!state.highlighted || !state.incidents.has(state.highlighted)) state.highlighted = i.id;
    document.body.classList.remove('flash-screen');
    void document.body.offsetWidth; // restart the CSS animation
    document.body.classList.add('flash-screen');
    beep(urgent);
  }

  function remind() {
    const waiting = [...state.incidents.values()].filter((i) => i.status === 'new');
    if (!waiting.length) {
      $('banner-new').hidden = true;
      return;
    }
    if (Date.now() - lastAlarmAt >= REMIND_EVERY_MS) {
      lastAlarmAt = Date.now();
      beep(waiting.some(isUrgent));
    }
  }

  // --- applying what the server says ------------------------------------------------------
  function apply(summary, event) {
    const known = state.incidents.get(summary.id);
    if (CLOSED.has(summary.status)) {
      state.incidents.delete(summary.id);
      if (state.highlighted === summary.id) state.highlighted = null;
    } else {
      const merged = {
        ...summary,
        _flashUntil: known ? known._flashUntil : 0,
        // A push or SMS that failed for good (the notification deadline passed).
        _notifyFailed: event === 'notify_failed' || Boolean(known && known._notifyFailed),
      };
      state.incidents.set(summary.id, merged);
      if (!known) alarm(merged, 'new');
      else if (event === 'escalated' || event === 'duress' || event === 'duress_cancel') alarm(merged, event === 'escalated' ? 'escalated' : 'duress');
    }
    if (state.openId === summary.id) {
      state.detail = { ...(state.detail || {}), ...summary };
      scheduleDetailRefresh();
    }
  }

  const PROBLEM_LABEL = { offline: 'OFFLINE', low_battery: 'LOW BATTERY', tamper: 'TAMPERED', online: 'back online', trouble: 'TROUBLE' };
  const ONLINE_SHOWN_MS = 60000;
  function renderDevices() {
    const banner = $('banner-devices');
    const now = Date.now();
    for (const [id, d] of state.devices) {
      if (!d.problems.length && !(d._onlineUntil > now)) state.devices.delete(id);
    }
    const devices = [...state.devices.values()];
    banner.hidden = devices.length === 0;
    const troubled = devices.filter((d) => d.problems.length).length;
    banner.replaceChildren(
      el('span', {}, `Panic buttons needing attention (${troubled}):`),
      ...devices.map((d) => {
        const shown = d.problems.length ? d.problems : ['online'];
        return el('span', {
          class: `device ${shown.map((p) => `device-${p}`).join(' ')}`, id: `device-${d.id}`, dataset: { problems: shown.join(' ') },
        },
        // A store's button, or a home's sensor (no phone: the home is hers, not a business).
        `${d.store ? d.store.name : `Home ${(d.home && (d.home.label || d.home.address)) || ''}`}${d.label ? ` · ${d.label}` : ''} · ${shown.map((p) => PROBLEM_LABEL[p] || p).join(', ')}`,
        d.problems.includes('offline') ? ` · last heartbeat ${clock(d.last_heartbeat_at)}` : '',
        d.problems.includes('low_battery') && d.battery_pct !== null ? ` · ${d.battery_pct}%` : '',
        // An alarm panel's troubles (docs/alarm-panels.md): AC loss, battery, communication.
        d.problems.includes('trouble') && (d.troubles || []).length ? ` · ${d.troubles.join(', ').replaceAll('_', ' ')}` : '',
        d.store && d.store.phone ? ` · ☎ ${d.store.phone}` : '');
      }),
    );
  }

  // The city-wide console shows which districts no console watches right now.
  async function refreshCoverage() {
    const banner = $('banner-coverage');
    if (!state.staff || !state.staff.city_wide || !state.token) { banner.hidden = true; return; }
    const res = await api('GET', '/v1/console/coverage', { token: state.token });
    if (!res.ok) return;
    const names = res.data.districts.filter((d) => !d.consoles).map((d) => d.name);
    state.coverage = res.data;
    banner.hidden = names.length === 0;
    banner.replaceChildren(
      el('span', {}, `No console open in ${names.length} district${names.length === 1 ? '' : 's'} (covered by neighbours and this console):`),
      ...names.map((n) => el('span', { class: 'district-unwatched' }, n)),
    );
  }

  function applyDevice(msg) {
    const known = state.devices.get(msg.device.id);
    const problems = new Set(known ? known.problems : []);
    if (msg.event === 'online') problems.delete('offline');
    else if (msg.event === 'trouble_restored') { if (!(msg.device.troubles || []).length) problems.delete('trouble'); }
    else problems.add(msg.event);
    state.devices.set(msg.device.id, {
      ...msg.device, problems: [...problems], _onlineUntil: msg.event === 'online' ? Date.now() + ONLINE_SHOWN_MS : 0,
    });
    renderDevices();
  }

  function onMessage(msg) {
    state.lastFrameAt = Date.now();
    state.frames += 1;
    // A batch (asked for in the auth frame) is several messages in log order, one frame.
    for (const one of msg.type === 'batch' ? msg.messages : [msg]) handle(one);
    if (msg.type === 'batch') state.cursor = msg.cursor;
    if (msg.type !== 'ping') renderList();
  }

  function handle(msg) {
    switch (msg.type) {
      case 'hello':
        state.staff = msg.staff;
        state.connected = true;
        state.retry = 0;
        state.connects += 1;
        setConnected(true);
        loadReference();
        refreshCoverage();
        refreshWalks();
        refreshScouts();
        if (state.openId) scheduleDetailRefresh();
        break;
      case 'snapshot': {
        // A reset: what is open now. Incidents new to this console still raise the alarm.
        state.snapshots += 1;
        const before = state.incidents;
        state.incidents = new Map();
        for (const summary of msg.incidents) {
          const known = before.get(summary.id);
          state.incidents.set(summary.id, { ...summary, _flashUntil: known ? known._flashUntil : 0 });
          if (!known && summary.status === 'new' && state.snapshots > 1) alarm(state.incidents.get(summary.id), 'new');
        }
        if (state.snapshots === 1 && [...state.incidents.values()].some((i) => i.status === 'new')) {
          const first = sorted().find((i) => i.status === 'new');
          alarm(first, isUrgent(first) ? (first.duress ? 'duress' : 'escalated') : 'new');
        }
        if (msg.devices) {
          state.devices = new Map(msg.devices.map((d) => [d.id, d]));
          renderDevices();
        }
        state.cursor = msg.cursor;
        break;
      }
      case 'incident':
        if (msg.event === 'cancel_requested') {
          learnStorePhone(msg.incident, msg.data);
          const phone = msg.data && msg.data.store ? msg.data.store.phone : null;
          toast(`Cancel requested by the store — call the store to verify${phone ? ` ☎ ${phone}` : ''}`);
        }
        apply(msg.incident, msg.event);
        state.cursor = msg.cursor;
        break;
      case 'device':
        // offline / online / low_battery / tamper: the store's button needs a look.
        applyDevice(msg);
        state.cursor = msg.cursor;
        break;
      case 'ping':
      case 'reconnect':
        state.cursor = msg.cursor;
        break;
      default:
        break; // unknown types are tolerated (docs/dispatch.md)
    }
  }

  // --- the WebSocket ----------------------------------------------------------------------
  // The console processes' URL when the server names one (ansim serve does), else this origin.
  function streamUrl() {
    const named = document.querySelector('meta[name="ansim-console-stream"]');
    if (named && named.content) return named.content;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/v1/console/stream`;
  }

  function connect() {
    if (state.signedOut) return;
    const ws = new WebSocket(streamUrl());
    state.ws = ws;
    ws.onopen = () => {
      // The token goes in the first frame, not the URL (URLs end up in access logs).
      const auth = { type: 'auth', token: state.token, batch: true };
      if (state.cursor) auth.cursor = state.cursor;
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (ev) => {
      if (ws !== state.ws) return;
      try {
        onMessage(JSON.parse(ev.data));
      } catch (err) {
        console.warn('bad console message', err);
      }
    };
    ws.onclose = (ev) => {
      if (ws !== state.ws) return;
      state.connected = false;
      if (ev.code === 4401 || ev.code === 4403) {
        signOut(ev.code === 4401 ? 'Your session has ended: sign in again.' : 'This account is not a dispatcher.');
        return;
      }
      setConnected(false);
      scheduleReconnect();
    };
  }

  let reconnectTimer = null;
  function scheduleReconnect() {
    if (state.signedOut || reconnectTimer) return;
    const delay = Math.min(5000, 400 * 2 ** state.retry) * (0.8 + Math.random() * 0.4);
    state.retry += 1;
    $('banner-retry').textContent = `(attempt ${state.retry}, next in ${(delay / 1000).toFixed(1)} s)`;
    reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, delay);
  }
  window.addEventListener('online', () => {
    if (!state.connected && reconnectTimer) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      connect();
    }
  });

  function setConnected(on) {
    $('banner-disconnected').hidden = on;
    $('conn').textContent = on ? '● live' : '● DISCONNECTED';
    $('conn').className = on ? 'conn live' : 'conn down';
    document.body.classList.toggle('is-disconnected', !on);
  }

  // --- map --------------------------------------------------------------------------------
  let map = null;
  let referenceLoaded = false;
  const incidentRenderer = L.svg({ padding: 0.5 });
  const incidentLayer = L.layerGroup();
  const focusLayer = L.layerGroup();

  function ensureMap() {
    if (map) return;
    map = Ansim.createMap('map');
    Ansim.mapLegend(map);
    incidentLayer.addTo(map);
    focusLayer.addTo(map);
  }

  async function loadReference() {
    if (referenceLoaded) return;
    referenceLoaded = true;
    const res = await api('GET', '/v1/map/reference', { token: state.token });
    if (!res.ok) {
      referenceLoaded = false;
      return;
    }
    const own = new Set(state.staff ? state.staff.district_ids : []);
    const drawn = Ansim.drawReference(map, res.data, {
      ownDistrictIds: own, cityWide: Boolean(state.staff && state.staff.city_wide),
    });
    if (drawn.bounds) map.fitBounds(drawn.bounds, { padding: [20, 20] });
    loadZones();
    incidentLayer.eachLayer((l) => l.bringToFront && l.bringToFront());
  }

  function drawIncidentMarkers(items) {
    if (!map) return;
    incidentLayer.clearLayers();
    for (const i of items) {
      if (i.lat === null || i.lon === null) continue;
      const color = isUrgent(i) ? '#ff3b5c' : i.status === 'new' ? '#ffb020' : '#7fd1ff';
      L.circleMarker([i.lat, i.lon], {
        renderer: incidentRenderer,
        radius: i.id === state.openId ? 12 : 9,
        color: i.id === state.openId ? '#ffffff' : color,
        weight: i.id === state.openId ? 3 : 2,
        fillColor: color,
        fillOpacity: 0.9,
        className: `incident-marker${i.status === 'new' ? ' pulse' : ''}`,
      })
        .bindTooltip(`${SOURCE_LABEL[i.source] || i.source} · ${STATUS_LABEL[i.status] || i.status}`)
        .on('click', () => { highlight(i.id); openIncident(i.id); })
        .addTo(incidentLayer);
    }
  }

  function drawFocus() {
    focusLayer.clearLayers();
    drawAssets();
    const d = state.detail;
    if (!map || !d) return;
    const trail = (d.trail || []).map((p) => [p.lat, p.lon]);
    if (trail.length > 1) {
      L.polyline(trail, { color: '#ffd166', weight: 3, dashArray: '6 4', renderer: incidentRenderer }).addTo(focusLayer);
    }
    for (const p of trail) {
      L.circleMarker(p, { radius: 3, color: '#ffd166', fillOpacity: 1, renderer: incidentRenderer }).addTo(focusLayer);
    }
    if (d.lat !== null && d.accuracy_m) {
      L.circle([d.lat, d.lon], { radius: d.accuracy_m, color: '#ffb020', weight: 1, fillOpacity: 0.08, renderer: incidentRenderer }).addTo(focusLayer);
    }
    const n = state.nearby;
    if (n) {
      for (const p of [...n.safe_places, ...n.police]) {
        L.circleMarker([p.lat, p.lon], { radius: 8, color: '#3fcf8e', weight: 2, fill: false, renderer: incidentRenderer })
          .bindTooltip(`${p.name} · ${metres(p.distance_m)}`).addTo(focusLayer);
      }
      for (const v of n.volunteers) {
        if (v.lat === null) continue;
        L.circleMarker([v.lat, v.lon], {
          radius: v.assigned ? 8 : 5, color: '#ff8c42', fillColor: '#ff8c42', fillOpacity: v.assigned ? 1 : 0.5, renderer: incidentRenderer,
        }).bindTooltip(`${v.assigned ? 'Assigned: ' : 'On duty: '}${v.name} (${v.badge_number || 'no badge'})`).addTo(focusLayer);
      }
    }
  }

  // --- special control zones (docs/control-room.md) ---------------------------------------
  // The zone of each incident comes from the server (its hours at the moment of the report);
  // the map draws every zone, the ones active now stronger.
  const zoneOf = new Map();
  const zoneAsked = new Set();
  const zoneLayer = L.layerGroup();
  let zoneTimer = null;
  window.ansimZones = zoneOf;

  function zoneRaise(i) {
    const z = zoneOf.get(i.id);
    return z ? z.priority_raise : 0;
  }
  function zoneBadge(i) {
    const z = zoneOf.get(i.id);
    if (!z) return null;
    const raised = z.priority_raise > 0 ? ` · PRIORITY +${z.priority_raise}` : '';
    return el('span', {
      class: `badge zone${z.priority_raise > 0 ? ' raised' : ''}`,
      title: `Special control zone: ${z.reason}${z.active_at_report ? '' : ' (outside its hours at the report)'}`,
      dataset: { zone: z.name },
    }, `ZONE ${z.name}${raised}`);
  }
  function askZones() {
    const ids = [...state.incidents.keys()].filter((id) => !zoneAsked.has(id));
    if (!ids.length || zoneTimer || !state.token) return;
    zoneTimer = setTimeout(() => fetchZones(ids.slice(0, 200)), 200);
  }
  async function fetchZones(ids) {
    const res = await api('GET', `/v1/console/zones/incidents?ids=${ids.join(',')}`, { token: state.token });
    zoneTimer = null;
    if (!res.ok) return;
    for (const id of ids) zoneAsked.add(id);
    for (const z of res.data.zones) zoneOf.set(z.incident_id, z);
    if (res.data.zones.length) { renderList(); if (state.detail) renderDetail(); }
    else askZones();
  }
  async function loadZones() {
    const res = await api('GET', '/v1/map/zones', { token: state.token });
    if (!res.ok || !map) return;
    zoneLayer.clearLayers();
    for (const z of res.data.zones) {
      L.geoJSON(z.geometry, {
        style: { color: '#c77dff', weight: z.active_now ? 2.5 : 1.5, dashArray: z.active_now ? null : '4 4', fillOpacity: z.active_now ? 0.15 : 0.04 },
        className: 'zone-shape',
      }).bindTooltip(`${z.name} · ${z.reason} · ${z.active_hours || 'all day'}${z.priority_raise ? ` · priority +${z.priority_raise}` : ''}${z.active_now ? ' · active now' : ''}`)
        .addTo(zoneLayer);
    }
    zoneLayer.addTo(map);
    incidentLayer.eachLayer((l) => l.bringToFront && l.bringToFront());
  }

  // --- detail -----------------------------------------------------------------------------
  let detailTimer = null;
  function scheduleDetailRefresh() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(() => { if (state.openId) loadDetail(state.openId); }, 250);
  }

  async function openIncident(id) {
    if (state.openId !== id) {
      state.openId = id;
      state.detail = state.incidents.get(id) || null;
      state.nearby = null;
      renderDetail();
    }
    const i = state.incidents.get(id);
    if (i && i.lat !== null && map) map.panTo([i.lat, i.lon]);
    renderList();
    await loadDetail(id);
  }

  async function loadDetail(id) {
    if (!state.connected && state.detail) return; // no requests into a dead network
    const [detail, nearby] = await Promise.all([
      api('GET', `/v1/console/incidents/${id}`, { token: state.token }),
      api('GET', `/v1/console/incidents/${id}/nearby`, { token: state.token }),
    ]);
    if (state.openId !== id) return;
    if (detail.status === 401) return signOut('Your session has ended: sign in again.');
    if (detail.ok) {
      state.detail = detail.data;
      for (const e of detail.data.timeline || []) if (e.kind === 'cancel_requested') learnStorePhone(detail.data, e.data);
    }
    if (nearby.ok) state.nearby = nearby.data;
    renderDetail();
    loadAssets(id);
  }

  function describeEvent(e, d) {
    const data = e.data || {};
    const bits = [];
    if (e.kind === 'assigned') bits.push(data.kind === 'unit' ? `unit ${data.unit}` : `volunteer ${volunteerName(d, data.volunteer_id)}`);
    if (e.kind === 'escalated') bits.push(`level ${data.level} (${data.reason})${data.paged ? ` · paged ${data.paged}` : ''}`);
    if (e.kind === 'covered') bits.push(`${data.reason.replace('_', ' ')} → ${(data.districts || []).length} district console(s)`);
    if (e.kind === 'unwatched') bits.push(`no console open · paged ${data.paged}`);
    if (e.kind === 'notified' || e.kind === 'notify_failed') bits.push(`${data.channel} → ${whoIs(d, data.target, data.recipient)}`);
    if (e.kind === 'location') bits.push(`${data.points || 1} point(s)`);
    if (data.disposition) bits.push(data.disposition);
    return bits.join(' · ');
  }
  function volunteerName(d, id) {
    const hit = [...(d.offers || []), ...(d.assignments || [])].find((o) => o.volunteer_id === id);
    return hit ? `${hit.name} (${hit.badge_number || '—'})` : (id || '').slice(0, 8);
  }
  function whoIs(d, target, recipient) {
    const id = String(target || '');
    const offer = (d.offers || []).find((o) => o.volunteer_id === id);
    if (offer) return `volunteer ${offer.name}`;
    return `${recipient || 'guardian'} ${id.slice(0, 8)}`;
  }
  function actorName(actor) {
    if (!actor) return 'system';
    if (state.staff && actor === `staff:${state.staff.id}`) return 'you';
    return actor.split(':')[0];
  }

  function section(title, ...body) {
    return el('section', { class: 'block' }, el('h3', {}, title), ...body);
  }

  // Live updates re-render the detail: what the dispatcher is typing must survive them.
  const KEPT_FIELDS = ['unit-input', 'volunteer-select', 'disposition-input'];
  function keepFields() {
    const active = document.activeElement;
    return {
      values: Object.fromEntries(KEPT_FIELDS.map((id) => [id, $(id) ? $(id).value : ''])),
      focused: active && KEPT_FIELDS.includes(active.id) ? active.id : null,
      caret: active && typeof active.selectionStart === 'number' ? active.selectionStart : null,
      scroll: $('detail').scrollTop,
      incident: state.openId,
    };
  }
  function restoreFields(kept) {
    if (kept.incident !== state.openId) return;
    for (const id of KEPT_FIELDS) {
      const field = $(id);
      if (field && kept.values[id] && [...(field.options || [{ value: kept.values[id] }])].some((o) => o.value === kept.values[id])) field.value = kept.values[id];
    }
    if (kept.focused && $(kept.focused) && !$(kept.focused).disabled) {
      $(kept.focused).focus();
      if (kept.caret !== null && $(kept.focused).setSelectionRange) $(kept.focused).setSelectionRange(kept.caret, kept.caret);
    }
    $('detail').scrollTop = kept.scroll;
  }

  function renderDetail() {
    const kept = keepFields();
    const pane = $('detail');
    const d = state.detail;
    if (!d) {
      pane.replaceChildren(el('p', { class: 'muted empty' }, 'Select an incident (j/k, Enter) to see its timeline and act on it.'));
      drawFocus();
      return;
    }
    const closed = CLOSED.has(d.status);
    const n = state.nearby || { safe_places: [], police: [], volunteers: [] };
    const head = el('header', { class: `detail-head status-${d.status}${isUrgent(d) ? ' urgent' : ''}` },
      el('h2', {}, `${SOURCE_LABEL[d.source] || d.source} · ${d.source === 'button' ? 'panic button' : d.trigger.replaceAll('_', ' ')}`),
      el('div', { class: 'meta' },
        el('span', { id: 'detail-status', class: 'status' }, STATUS_LABEL[d.status] || d.status),
        ` · ${d.district_name || 'outside every district'} · received ${clock(d.received_at)}`,
        d.acknowledged_at ? ` · acknowledged ${clock(d.acknowledged_at)}` : '',
        d.disposition ? ` · “${d.disposition}”` : ''),
      el('div', { class: 'row3' }, badges(d)),
      el('div', { class: 'meta muted' }, d.lat === null ? 'no location' : `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)} ± ${metres(d.accuracy_m)}`));

    const canAck = d.status === 'new';
    const actions = el('div', { class: 'actions' },
      el('button', { type: 'button', id: 'act-ack', class: 'primary', disabled: !canAck, onclick: () => act('ack') }, 'Acknowledge (a)'),
      el('button', { type: 'button', id: 'act-responding', disabled: closed || d.status === 'responding' || d.status === 'on_scene', onclick: () => act('responding') }, 'Responding (r)'),
      el('button', { type: 'button', id: 'act-on-scene', disabled: closed || d.status === 'new' || d.status === 'on_scene', onclick: () => act('on_scene') }, 'On scene (o)'),
      el('button', { type: 'button', id: 'act-false-alarm', class: 'danger', disabled: closed, onclick: () => confirmFalseAlarm() }, 'False alarm (f)'));

    const confirmBar = state.confirming === d.id
      ? el('div', { class: 'confirm', role: 'alertdialog' }, 'Mark as a false alarm? ',
        el('button', { type: 'button', id: 'confirm-yes', class: 'danger', onclick: () => { state.confirming = null; act('false_alarm'); } }, 'Yes (y)'),
        el('button', { type: 'button', onclick: () => { state.confirming = null; renderDetail(); } }, 'No (Esc)'))
      : null;

    const unitForm = el('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); assignUnit(); } },
      el('input', { id: 'unit-input', placeholder: 'unit, e.g. Patrol-12', maxlength: '64', disabled: closed, 'aria-label': 'police unit' }),
      el('button', { type: 'submit', disabled: closed }, 'Assign unit (u)'));
    const candidates = n.volunteers.filter((v) => !v.assigned);
    const volunteerForm = el('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); assignVolunteer(); } },
      el('select', { id: 'volunteer-select', disabled: closed || !candidates.length, 'aria-label': 'volunteer' },
        candidates.length
          ? candidates.map((v) => el('option', { value: v.id }, `${v.name} · ${v.badge_number || '—'} · ${metres(v.distance_m)}`))
          : el('option', { value: '' }, 'no volunteer on duty nearby')),
      el('button', { type: 'submit', disabled: closed || !candidates.length }, 'Assign volunteer (v)'));
    const resolveForm = el('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); resolve(); } },
      el('input', { id: 'disposition-input', placeholder: 'disposition, e.g. escorted home', maxlength: '500', disabled: closed, 'aria-label': 'disposition' }),
      el('button', { type: 'submit', disabled: closed }, 'Resolve (d)'));

    const assigned = (d.assignments || []).map((a) => el('li', {},
      a.kind === 'unit' ? `Unit ${a.unit}` : `Volunteer ${a.name} (${a.badge_number || '—'})`, el('span', { class: 'muted' }, ` · ${clock(a.created_at)}`)));
    const notified = [
      ...(d.offers || []).map((o) => el('li', {}, `Volunteer ${o.name} (${o.badge_number || '—'}) · offered ${clock(o.offered_at)} · ${o.status}`,
        o.distance_m !== null ? el('span', { class: 'muted' }, ` · ${metres(o.distance_m)}`) : '')),
      ...(d.timeline || []).filter((e) => e.kind === 'notified' || e.kind === 'notify_failed')
        .map((e) => el('li', { class: e.kind === 'notify_failed' ? 'error' : '' }, `${clock(e.at)} · ${e.kind === 'notified' ? 'notified' : 'FAILED'} ${describeEvent(e, d)}`)),
    ];
    const places = [...n.safe_places.map((p) => ({ ...p, label: p.is_safety_house ? 'Safety House' : p.kind.replace('_', ' ') })),
      ...n.police.map((p) => ({ ...p, label: p.kind.replace('_', ' ') }))]
      .map((p) => el('li', {}, el('strong', {}, p.name), ` · ${p.label} · ${metres(p.distance_m)}`, p.phone ? el('span', { class: 'muted' }, ` · ☎ ${p.phone}`) : ''));
    const timeline = (d.timeline || []).map((e) => el('li', { class: `ev ev-${e.kind}` },
      el('span', { class: 'time' }, clock(e.at)), el('span', { class: 'kind' }, e.kind.replace('_', ' ')),
      el('span', { class: 'muted' }, ` ${describeEvent(e, d)} · ${actorName(e.actor)}`)));
    // A linked report of a district this console may not see comes without position or time.
    const linked = (d.linked || []).map((l) => l.linked ? el('li', { class: 'muted' },
      `${SOURCE_LABEL[l.source] || l.source} · ${STATUS_LABEL[l.status] || l.status} · ${l.linked} (${l.district_name || 'no district'})`) : el('li', {},
      el('a', { href: '#', onclick: (ev) => { ev.preventDefault(); highlight(l.id); openIncident(l.id); } },
        `${SOURCE_LABEL[l.source] || l.source} · ${STATUS_LABEL[l.status] || l.status} · ${clock(l.received_at)}`)));

    // A home sensor's alarm: her address, the sensor that fired, the last 24 h of arming.
    const h = d.home;
    const homeSection = h ? section('Home',
      el('p', { id: 'home-address' }, el('strong', {}, h.address), h.label ? ` · ${h.label}` : '',
        ` · now ${h.state}`),
      el('p', { id: 'home-sensor' }, h.sensor ? `Sensor: ${h.sensor.kind.replace('_', ' ')}${h.sensor.label ? ` (${h.sensor.label})` : ''}${h.sensor.zone ? ` · zone ${h.sensor.zone}` : ''}${h.sensor.alarm_code ? ` · ${h.sensor.alarm_code}` : ''}` : 'Sensor: none (a disarm with her PIN)'),
      el('ol', { class: 'timeline', id: 'home-history' }, (h.arming_history || []).map((e) => el('li', { class: e.duress ? 'duress' : '' },
        el('span', { class: 'time' }, clock(e.at)), el('span', { class: 'kind' }, e.kind.replace('_', ' ')),
        el('span', { class: 'muted' }, ` via ${e.via}`), e.duress ? el('strong', { class: 'badge duress' }, e.via === 'panel' ? ' DURESS CODE' : ' DURESS PIN') : '')))) : '';
    // Her phone's trail, when her SOS is linked with this alarm (one emergency).
    const linkedTrails = (d.linked || []).filter((l) => l.trail && l.trail.length)
      .map((l) => section(`Her phone's trail (${l.trail.length} points)`, el('ol', {},
        l.trail.map((p) => el('li', {}, `${clock(p.captured_at || p.received_at)} · ${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`)))));
    pane.replaceChildren(head, homeSection, walkSection(d), actions, confirmBar || '', unitForm, volunteerForm, resolveForm,
      section('Assigned', assigned.length ? el('ul', {}, assigned) : el('p', { class: 'muted' }, 'nobody yet')),
      section('Nearest open safe places and police', places.length ? el('ol', {}, places) : el('p', { class: 'muted' }, d.lat === null ? 'no location yet' : '—')),
      assetsSection(d),
      section('Notified', notified.length ? el('ul', {}, notified) : el('p', { class: 'muted' }, 'nobody yet')),
      section(`Timeline (${(d.timeline || []).length})`, el('ol', { class: 'timeline', id: 'timeline' }, timeline)),
      section(`Trail (${(d.trail || []).length} points)`, el('p', { class: 'muted' }, 'shown on the map in yellow')),
      linked.length ? section('Linked reports (same emergency)', el('ul', {}, linked)) : '',
      ...linkedTrails);
    restoreFields(kept);
    drawFocus();
    drawIncidentMarkers(sorted());
  }

  // --- CCTV cameras and emergency bells around her (docs/control-room.md) -----------------
  // Read around her latest position: loaded again when her trail moves it (or the radius
  // changes), not on every other update of the incident.
  const ASSET_RADII = [100, 300, 500, 1000];
  const assetRenderer = L.svg({ padding: 0.5 });
  const assetLayer = L.layerGroup();
  state.assets = null; // { key, incidentId, data }
  state.assetsRadius = null; // null: the server's default (ANSIM_ASSETS_RADIUS_M)
  state.assetLoads = 0;

  function assetsKey(d) {
    return d && d.lat !== null && d.lat !== undefined ? `${d.id}|${d.lat}|${d.lon}|${state.assetsRadius}` : null;
  }

  async function loadAssets(id) {
    const d = state.detail;
    const key = assetsKey(d);
    if (!d || d.id !== id || !key || (state.assets && state.assets.key === key)) return;
    const query = state.assetsRadius ? `?radius_m=${state.assetsRadius}` : '';
    const res = await api('GET', `/v1/console/incidents/${id}/assets${query}`, { token: state.token });
    if (state.openId !== id || !res.ok) return;
    const first = !state.assets || state.assets.incidentId !== id;
    state.assets = { key, incidentId: id, data: res.data };
    state.assetLoads += 1;
    const node = $('assets');
    if (node) node.replaceWith(assetsSection(state.detail));
    drawAssets();
    if (first && map && res.data.position) {
      // The first look at an incident's surroundings: zoom to the circle searched.
      const p = res.data.position;
      map.fitBounds(L.latLng(p.lat, p.lon).toBounds(2.4 * res.data.radius_m), { maxZoom: 17 });
    }
  }

  function assetLine(a) {
    const office = [a.office, a.phone ? `☎ ${a.phone}` : ''].filter(Boolean).join(' ');
    if (a.kind === 'cctv') {
      return el('li', { class: 'asset asset-cctv', dataset: { id: a.id } },
        el('strong', {}, `${metres(a.distance_m)}`), ` · ${a.cameras ? `${a.cameras} camera${a.cameras === 1 ? '' : 's'}` : 'cameras'}`,
        a.direction ? ` · facing ${a.direction}` : '', a.address ? ` · ${a.address}` : '',
        office ? el('span', { class: 'muted' }, ` · ${office}`) : '');
    }
    return el('li', { class: 'asset asset-bell', dataset: { id: a.id } },
      el('strong', {}, `${metres(a.distance_m)}`), ` · ${a.name || 'emergency bell'}`, a.address ? ` · ${a.address}` : '',
      office ? el('span', { class: 'muted' }, ` · ${office}`) : '');
  }

  function assetsSection(d) {
    const here = state.assets && state.assets.incidentId === d.id ? state.assets.data : null;
    const radius = here ? here.radius_m : state.assetsRadius;
    const radii = [...new Set([...ASSET_RADII, radius].filter(Boolean))].sort((x, y) => x - y);
    const picker = el('select', {
      id: 'assets-radius', 'aria-label': 'search radius',
      onchange: (ev) => { state.assetsRadius = Number(ev.target.value); loadAssets(d.id); },
    }, radii.map((r) => el('option', { value: String(r), selected: r === radius }, `within ${metres(r)}`)));
    const list = (items, within, what) => [
      within > items.length ? el('p', { class: 'muted' }, `the ${items.length} nearest of ${within}`) : '',
      items.length ? el('ol', { class: 'assets' }, items.map(assetLine))
        : el('p', { class: 'muted' }, `no ${what} within ${metres(radius)}`),
    ];
    const body = d.lat === null ? [el('p', { class: 'muted' }, 'no location yet')]
      : !here ? [el('p', { class: 'muted' }, 'looking…')]
        : [el('h4', { id: 'assets-cameras-head' }, `CCTV (${here.cameras_within})`), ...list(here.cameras, here.cameras_within, 'CCTV'),
          el('h4', { id: 'assets-bells-head' }, `Emergency bells (${here.bells_within})`), ...list(here.bells, here.bells_within, 'emergency bell')];
    return el('section', { class: 'block', id: 'assets' },
      el('h3', {}, 'Around her: CCTV and emergency bells ', picker), ...body);
  }

  function drawAssets() {
    if (!map) return;
    if (!map.hasLayer(assetLayer)) assetLayer.addTo(map);
    assetLayer.clearLayers();
    const d = state.detail;
    const here = d && state.assets && state.assets.incidentId === d.id ? state.assets.data : null;
    if (!here || !here.position) return;
    L.circle([here.position.lat, here.position.lon], {
      radius: here.radius_m, color: '#8fa3b8', weight: 1, dashArray: '4 4', fill: false, renderer: assetRenderer, interactive: false,
    }).addTo(assetLayer);
    for (const a of [...here.cameras, ...here.bells]) {
      const cctv = a.kind === 'cctv';
      L.circleMarker([a.lat, a.lon], {
        renderer: assetRenderer, radius: cctv ? 5 : 6, weight: 2,
        color: cctv ? '#5ec8ff' : '#e36cff', fillColor: cctv ? '#0b2a3d' : '#e36cff', fillOpacity: cctv ? 0.9 : 0.6,
        className: `asset-marker asset-marker-${a.kind}`,
      }).bindTooltip(cctv
        ? `CCTV · ${a.cameras || '?'} camera(s)${a.direction ? ` · facing ${a.direction}` : ''} · ${metres(a.distance_m)}`
        : `Emergency bell · ${a.name || ''} · ${metres(a.distance_m)}`).addTo(assetLayer);
    }
  }

  // --- walks home (docs/safe-return.md) -------------------------------------------------------
  // The district's running walks: counted, and on the map only those she shared with the
  // control centre; a walk that became an SOS is highlighted and opens its incident.
  const walkLayer = L.layerGroup();
  const WALK_REASON = {
    no_arrival: 'not arrived', no_position: 'no position', off_route: 'off route',
    not_moving: 'not moving', low_battery: 'battery low', duress: 'duress',
  };
  async function refreshWalks() {
    if (!state.token || state.signedOut) return;
    const res = await api('GET', '/v1/console/safe-return', { token: state.token });
    if (!res.ok) return;
    state.walks = res.data;
    renderWalks();
  }
  function walkItem(w) {
    const classes = ['walk', w.sos ? 'sos' : `walk-${w.status}`];
    const where = w.destination_label || (w.destination ? `${w.destination.lat.toFixed(4)}, ${w.destination.lon.toFixed(4)}` : 'destination not shared');
    const open = w.sos && w.incident_id ? () => { if (state.incidents.has(w.incident_id)) { highlight(w.incident_id); openIncident(w.incident_id); } } : null;
    return el('li', { class: classes.join(' '), id: `walk-${w.session_id}`, dataset: { sos: w.sos ? 'true' : 'false' }, onclick: open },
      el('span', { class: 'what' }, w.sos ? `SOS · ${WALK_REASON[w.check_reason] || w.check_reason}` : w.status === 'asking' ? `Asking “Are you OK?” · ${WALK_REASON[w.check_reason] || w.check_reason}` : 'Walking home'),
      el('span', { class: 'muted' }, ` · to ${where} · expected ${clock(w.expected_arrival_at)}`),
      w.last_point_at ? el('span', { class: 'muted' }, ` · seen ${clock(w.last_point_at)}`) : '');
  }
  function renderWalks() {
    const w = state.walks;
    if (!w) return;
    const panel = $('walks');
    const sessions = w.sessions || [];
    panel.hidden = w.active === 0 && sessions.length === 0;
    $('walks-count').textContent = String(w.active);
    const shared = sessions.filter((s) => s.shared && !s.sos).length;
    const hidden = Math.max(0, w.active - shared);
    $('walks-hidden').textContent = hidden ? `${hidden} not shared with the control centre (counted only)` : '';
    $('walks-list').replaceChildren(...sessions.map(walkItem));
    drawWalks(sessions);
  }
  function drawWalks(sessions) {
    if (!map) return;
    if (!map.hasLayer(walkLayer)) walkLayer.addTo(map);
    walkLayer.clearLayers();
    for (const s of sessions) {
      if (!s.location) continue;
      const color = s.sos ? '#ff3b5c' : '#b388ff';
      L.circleMarker([s.location.lat, s.location.lon], {
        renderer: incidentRenderer, radius: 7, color, weight: 2, fillColor: color, fillOpacity: 0.6,
        className: `walk-marker${s.sos ? ' sos' : ''}`,
      }).bindTooltip(`${s.sos ? 'Walk home · SOS' : 'Walk home'} · ${s.destination_label || ''}`).addTo(walkLayer);
      if (s.destination) {
        L.polyline([[s.location.lat, s.location.lon], [s.destination.lat, s.destination.lon]], {
          renderer: incidentRenderer, color, weight: 1, dashArray: '2 6',
        }).addTo(walkLayer);
      }
    }
  }

  // An SOS from a walk home: why, where she was going, by when, and the scouts with her.
  function walkSection(d) {
    if (d.source !== 'safe_return') return '';
    const reported = (d.timeline || []).find((e) => e.kind === 'reported');
    const data = (reported && reported.data) || {};
    const dest = data.destination || {};
    const escort = data.scouts || [];
    return section('Walk home',
      el('p', { id: 'walk-reason' }, el('strong', {}, `Check: ${WALK_REASON[data.reason] || data.reason || d.trigger}`),
        ` · going to ${dest.label || 'her destination'}${dest.lat !== undefined ? ` (${dest.lat.toFixed(5)}, ${dest.lon.toFixed(5)})` : ''}`,
        data.expected_arrival_at ? ` · expected ${clock(data.expected_arrival_at)}` : ''),
      escort.length ? el('p', { id: 'walk-scouts' }, `Safe Return Scouts (${escort[0].team}): `,
        escort.map((x) => `${x.name} · badge ${x.badge_number || '—'}${x.phone ? ` · ☎ ${x.phone}` : ''}`).join('; ')) : '');
  }

  // --- Safe Return Scouts tonight: the district office's evening ---------------------------
  const BOOKING_LABEL = { booked: 'booked', walking: 'walking', completed: 'done', cancelled: 'cancelled', no_show: 'NO-SHOW' };
  async function refreshScouts() {
    if (!state.token || state.signedOut) return;
    const res = await api('GET', '/v1/console/scout-bookings', { token: state.token });
    if (!res.ok) return;
    const bookings = res.data.bookings || [];
    $('scouts').hidden = bookings.length === 0;
    $('scouts-count').textContent = String(bookings.filter((b) => b.status === 'booked' || b.status === 'walking').length);
    $('scouts-list').replaceChildren(...bookings.map((b) => el('li', {
      class: `walk booking-${b.status}${b.status === 'no_show' ? ' sos' : ''}`, id: `booking-${b.booking_id}`,
    },
    el('span', { class: 'what' }, `${clock(b.meet_at)} · ${BOOKING_LABEL[b.status] || b.status}`),
    el('span', { class: 'muted' }, ` · ${b.meeting_label || 'meeting point'} → ${b.destination_label || 'destination'} · ${b.team.name} (${b.scouts.map((x) => x.badge_number || '—').join(', ')})`))));
  }

  // --- actions ----------------------------------------------------------------------------
  function toast(text, isError) {
    const t = $('toast');
    t.textContent = text;
    t.className = isError ? 'toast error' : 'toast';
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  async function post(path, body, done) {
    const res = await api('POST', path, { token: state.token, body });
    if (res.status === 401) return signOut('Your session has ended: sign in again.');
    if (!res.ok) {
      toast(res.data && res.data.detail ? res.data.detail : `failed (HTTP ${res.status || 'network'})`, true);
      return null;
    }
    const summary = res.data.incident || res.data;
    if (summary && summary.id) apply(summary, null);
    renderList();
    toast(done);
    await loadDetail(state.openId);
    return res.data;
  }

  function target() {
    return state.openId || state.highlighted;
  }

  async function act(kind) {
    const id = target();
    if (!id) return;
    if (id !== state.openId) await openIncident(id);
    if (kind === 'ack') return post(`/v1/console/incidents/${id}/ack`, {}, 'Acknowledged');
    return post(`/v1/console/incidents/${id}/status`, { status: kind }, STATUS_LABEL[kind] || kind);
  }

  function confirmFalseAlarm() {
    if (!state.openId) return;
    state.confirming = state.openId;
    renderDetail();
    $('confirm-yes').focus();
  }

  async function assignUnit() {
    const input = $('unit-input');
    const unit = input.value.trim();
    if (!unit) return input.focus();
    if (await post(`/v1/console/incidents/${state.openId}/assign`, { kind: 'unit', unit }, `Unit ${unit} assigned`)) $('unit-input').value = '';
  }

  async function assignVolunteer() {
    const id = $('volunteer-select').value;
    if (id) await post(`/v1/console/incidents/${state.openId}/assign`, { kind: 'volunteer', volunteer_id: id }, 'Volunteer assigned');
  }

  async function resolve() {
    const input = $('disposition-input');
    const disposition = input.value.trim();
    if (!disposition) {
      toast('A disposition is needed to resolve', true);
      return input.focus();
    }
    await post(`/v1/console/incidents/${state.openId}/status`, { status: 'resolved', disposition }, 'Resolved');
  }

  // --- keyboard ---------------------------------------------------------------------------
  function focusField(id) {
    const field = $(id);
    if (field && !field.disabled) field.focus();
  }

  document.addEventListener('keydown', (ev) => {
    if ($('app').hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ev.target.matches('input, select, textarea');
    if (ev.key === 'Escape') {
      $('help').hidden = true;
      if (state.confirming) { state.confirming = null; renderDetail(); }
      if (typing) ev.target.blur();
      return;
    }
    if (typing) return;
    if (state.confirming && (ev.key === 'y' || ev.key === 'Y')) {
      state.confirming = null;
      act('false_alarm');
      ev.preventDefault();
      return;
    }
    const keys = {
      j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
      Enter: () => state.highlighted && openIncident(state.highlighted),
      a: () => act('ack'), r: () => act('responding'), o: () => act('on_scene'),
      f: () => { if (target() && target() !== state.openId) openIncident(target()).then(confirmFalseAlarm); else confirmFalseAlarm(); },
      u: () => focusField('unit-input'), v: () => focusField('volunteer-select'), d: () => focusField('disposition-input'),
      m: () => toggleMute(), '?': () => { $('help').hidden = !$('help').hidden; },
    };
    const handler = keys[ev.key];
    if (!handler) return;
    if (ev.key === 'Enter' && ev.target.matches('button, a')) return; // let buttons do their job
    ev.preventDefault();
    handler();
  });

  function toggleMute() {
    state.muted = !state.muted;
    $('mute').textContent = state.muted ? 'Sound: MUTED' : 'Sound: on';
  }

  // --- sign-in ----------------------------------------------------------------------------
  async function showLogin(message) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('login-username').focus();
    const { demo } = await Ansim.config();
    if (demo) {
      const hint = $('login-demo');
      const accounts = [...demo.dispatchers.map((d) => ({ ...d, label: d.district_name || d.district })),
        ...(demo.supervisor ? [{ ...demo.supervisor, label: 'city-wide' }] : [])];
      hint.replaceChildren(el('p', {}, 'Demo accounts (development only):'),
        ...accounts.map((a) => el('button', {
          type: 'button', class: 'link',
          onclick: () => { $('login-username').value = a.username; $('login-password').value = a.password; },
        }, `${a.username} (${a.label})`)));
      hint.hidden = false;
    }
  }

  async function login(ev) {
    ev.preventDefault();
    ensureAudio();
    $('login-error').textContent = '';
    $('login-submit').disabled = true;
    const res = await api('POST', '/v1/auth/login', {
      body: { username: $('login-username').value.trim(), password: $('login-password').value, ...secondFactor() },
    });
    $('login-submit').disabled = false;
    if (!res.ok) {
      $('login-error').textContent = loginError(res);
      return;
    }
    if (res.data.role !== 'dispatcher') {
      $('login-error').textContent = `This is a ${res.data.role} account; the console is for dispatchers.`;
      return;
    }
    state.token = res.data.token;
    state.name = res.data.name;
    sessionStorage.setItem('ansim.console.token', state.token);
    sessionStorage.setItem('ansim.console.name', state.name);
    $('login-password').value = '';
    $('login-code').value = '';
    $('login-code-row').hidden = true;
    start();
  }

  // An account with a second factor answers SecondFactorRequired to the password alone: the
  // code field then shows, and the next submit sends both (6 digits: TOTP, else a recovery code).
  function secondFactor() {
    const code = $('login-code').value.trim();
    if ($('login-code-row').hidden || !code) return {};
    return /^[0-9]{6}$/.test(code) ? { totp: code } : { recovery_code: code };
  }

  function loginError(res) {
    const error = res.data && res.data.error;
    if (error === 'SecondFactorRequired' || error === 'SecondFactorInvalid') {
      $('login-code-row').hidden = false;
      $('login-code').value = '';
      $('login-code').focus();
      return error === 'SecondFactorRequired'
        ? 'Enter the 6-digit code from your authenticator app (or a recovery code).'
        : 'Wrong or already used code: wait for the next one.';
    }
    if (res.status === 401) return 'Wrong username or password.';
    return `Sign-in failed (${(res.data && res.data.detail) || res.status}).`;
  }

  function start() {
    state.signedOut = false;
    $('login').hidden = true;
    $('app').hidden = false;
    $('who').textContent = state.name;
    ensureMap();
    map.invalidateSize();
    setConnected(false);
    $('banner-disconnected').hidden = true; // not "disconnected" before the first try
    $('conn').textContent = 'connecting…';
    connect();
  }

  async function signOut(message) {
    state.signedOut = true;
    const token = state.token;
    state.token = null;
    sessionStorage.removeItem('ansim.console.token');
    sessionStorage.removeItem('ansim.console.name');
    if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    state.incidents = new Map();
    state.cursor = null;
    state.openId = null;
    state.detail = null;
    if (token && !message) await api('POST', '/v1/auth/logout', { token });
    showLogin(message);
  }

  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', () => signOut());
  $('mute').addEventListener('click', toggleMute);
  $('help-button').addEventListener('click', () => { $('help').hidden = false; });
  $('help-close').addEventListener('click', () => { $('help').hidden = true; });
  setInterval(tick, 1000);
  setInterval(remind, 1000);
  setInterval(refreshCoverage, 10000);
  setInterval(refreshWalks, 10000);
  setInterval(refreshScouts, 30000);
  if (state.token) start();
  else showLogin();
})();
