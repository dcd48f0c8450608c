/* The analytics page: aggregates from /v1/analytics/*, drawn as SVG by hand (bars, a week grid,
   stacked outcome bars) and a Leaflet grid for the heat map. No personal data reaches it: the
   heat map's cells with fewer than k incidents are never sent. */
'use strict';

(() => {
  const { api, el } = Ansim;
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
  const OUTCOME_COLOR = { open: '#ffb020', resolved: '#3fcf8e', false_alarm: '#ff3b5c', cancelled: '#8a9bb0' };
  const state = { token: sessionStorage.getItem('ansim.analytics.token'), name: sessionStorage.getItem('ansim.analytics.name') || '', loads: 0, data: {} };
  window.ansimAnalytics = state;

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function query() {
    const since = new Date(`${$('since').value}T00:00:00+09:00`).toISOString();
    const until = new Date(new Date(`${$('until').value}T00:00:00+09:00`).getTime() + 86400000).toISOString();
    return `since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`;
  }
  const heatParams = () => `cell_m=${$('cell').value}&k=${$('k').value}`;

  // --- charts -----------------------------------------------------------------------------
  function districtsChart(rows, crimes) {
    const named = rows.filter((r) => r.code);
    const crimeBy = new Map((crimes || []).map((c) => [c.code, c.total]));
    const W = 720, H = 260, left = 40, bottom = 70, bw = (W - left) / Math.max(named.length, 1);
    const max = Math.max(1, ...named.map((r) => r.incidents));
    const cmax = Math.max(1, ...named.map((r) => crimeBy.get(r.code) || 0));
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'incidents by district' });
    const points = [];
    named.forEach((r, n) => {
      const h = ((H - bottom - 10) * r.incidents) / max;
      const x = left + n * bw;
      root.append(svg('rect', { class: 'bar', x: x + 2, y: H - bottom - h, width: Math.max(bw - 4, 1), height: h, 'data-code': r.code },
        svg('title', {}, `${r.name}: ${r.incidents} incidents, ${r.false_alarms} false alarms, median ack ${r.ack_p50_s ?? '—'} s`)));
      root.append(svg('text', { x: x + bw / 2, y: H - bottom + 12, transform: `rotate(45 ${x + bw / 2} ${H - bottom + 12})` }, r.name || r.code));
      const c = crimeBy.get(r.code);
      if (c !== undefined) points.push([x + bw / 2, H - bottom - ((H - bottom - 10) * c) / cmax, r.name, c]);
    });
    if (points.length > 1) {
      root.append(svg('polyline', { class: 'crime', points: points.map((p) => `${p[0]},${p[1]}`).join(' ') }));
      for (const p of points) root.append(svg('circle', { class: 'crime-dot', cx: p[0], cy: p[1], r: 3 }, svg('title', {}, `${p[2]}: ${p[3]} crimes`)));
    }
    root.append(svg('text', { x: 2, y: 12 }, String(max)));
    root.append(svg('text', { x: 2, y: H - bottom }, '0'));
    $('districts-chart').replaceChildren(root);
  }

  function hoursChart(hours) {
    const cw = 26, ch = 18, left = 34, top = 14;
    const root = svg('svg', { viewBox: `0 0 ${left + 24 * cw} ${top + 7 * ch + 4}`, role: 'img', 'aria-label': 'incidents by hour of the week' });
    const max = Math.max(1, ...hours);
    for (let h = 0; h < 24; h += 3) root.append(svg('text', { x: left + h * cw, y: 10 }, `${h}h`));
    DAYS.forEach((d, day) => {
      root.append(svg('text', { x: 0, y: top + day * ch + 12 }, d));
      for (let h = 0; h < 24; h += 1) {
        const n = hours[day * 24 + h];
        root.append(svg('rect', {
          class: 'hour', x: left + h * cw, y: top + day * ch, width: cw - 2, height: ch - 2,
          fill: n ? `rgba(255, 90, 90, ${0.12 + 0.88 * (n / max)})` : '#16202b',
        }, svg('title', {}, `${d} ${h}:00-${h + 1}:00: ${n}`)));
      }
    });
    $('hours-chart').replaceChildren(root);
  }

  function outcomesChart(rows) {
    const sources = [...new Set(rows.map((r) => r.source))];
    const W = 720, rowH = 24, left = 90;
    const root = svg('svg', { viewBox: `0 0 ${W} ${sources.length * rowH + 20}`, role: 'img', 'aria-label': 'incidents by source and outcome' });
    sources.forEach((s, n) => {
      const mine = rows.filter((r) => r.source === s);
      const total = mine.reduce((a, r) => a + r.incidents, 0) || 1;
      let x = left;
      root.append(svg('text', { x: 0, y: n * rowH + 15 }, s));
      for (const r of mine) {
        const w = ((W - left) * r.incidents) / total;
        root.append(svg('rect', { x, y: n * rowH + 2, width: w, height: rowH - 6, fill: OUTCOME_COLOR[r.outcome] || '#888' },
          svg('title', {}, `${s} · ${r.outcome}: ${r.incidents}`)));
        x += w;
      }
    });
    Object.entries(OUTCOME_COLOR).forEach(([o, c], n) => {
      root.append(svg('rect', { x: left + n * 120, y: sources.length * rowH + 6, width: 10, height: 10, fill: c }));
      root.append(svg('text', { x: left + n * 120 + 14, y: sources.length * rowH + 15 }, o.replace('_', ' ')));
    });
    $('outcomes-chart').replaceChildren(root);
    const secs = (v) => (v === null || v === undefined ? '—' : `${v} s`);
    $('outcomes').replaceChildren(
      el('tr', {}, ...['source', 'outcome', 'incidents', 'ack median', 'ack p90'].map((h) => el('th', {}, h))),
      ...rows.map((r) => el('tr', {}, el('td', {}, r.source), el('td', {}, r.outcome.replace('_', ' ')),
        el('td', { class: 'num' }, r.incidents), el('td', { class: 'num' }, secs(r.ack_p50_s)), el('td', { class: 'num' }, secs(r.ack_p90_s)))));
  }

  function dongsTable(rows) {
    $('dongs').replaceChildren(
      el('tr', {}, ...['dong', 'district', 'incidents', 'false alarms', 'resolved'].map((h) => el('th', {}, h))),
      ...rows.slice(0, 20).map((r) => el('tr', { class: 'dong-row' }, el('td', {}, r.name), el('td', {}, r.district_code || ''),
        el('td', { class: 'num' }, r.incidents), el('td', { class: 'num' }, r.false_alarms), el('td', { class: 'num' }, r.resolved))));
  }

  // --- heat map ---------------------------------------------------------------------------
  let map = null;
  let heatLayer = null;
  async function ensureMap() {
    if (map) return;
    map = Ansim.createMap('heatmap');
    const ref = await api('GET', '/v1/map/reference', { token: state.token });
    if (ref.ok) {
      const drawn = Ansim.drawReference(map, { districts: ref.data.districts, places: [] }, {});
      if (drawn.bounds) map.fitBounds(drawn.bounds);
    }
  }
  function drawHeat(h) {
    if (heatLayer) heatLayer.remove();
    const max = Math.max(1, ...h.cells.map((c) => c.incidents));
    heatLayer = L.geoJSON({ type: 'FeatureCollection', features: h.cells.map((c) => ({ type: 'Feature', properties: c, geometry: c.geometry })) }, {
      style: (f) => ({ color: '#ff5a5a', weight: 0.5, fillColor: '#ff3b5c', fillOpacity: 0.15 + 0.7 * (f.properties.incidents / max), className: 'heat-cell' }),
      onEachFeature: (f, layer) => layer.bindTooltip(`${f.properties.incidents} incidents`),
    }).addTo(map);
    $('heat-note').textContent = `${h.cells.length} cells of ${h.cell_m} m shown; ${h.hidden_cells} cells with fewer than ${h.k} incidents (${h.hidden_incidents} incidents) are not shown.`;
  }

  // --- loading ----------------------------------------------------------------------------
  async function load(ev) {
    if (ev) ev.preventDefault();
    $('error').textContent = '';
    const q = query();
    const t = { token: state.token };
    const year = $('crime-year').value;
    const [districts, dongs, hours, outcomes, heat, crimes] = await Promise.all([
      api('GET', `/v1/analytics/districts?${q}`, t),
      api('GET', `/v1/analytics/dongs?${q}`, t),
      api('GET', `/v1/analytics/hours?${q}`, t),
      api('GET', `/v1/analytics/outcomes?${q}`, t),
      api('GET', `/v1/analytics/heatmap?${q}&${heatParams()}`, t),
      api('GET', `/v1/analytics/crimes${year ? `?year=${year}` : ''}`, t),
    ]);
    const failed = [districts, dongs, hours, outcomes, heat, crimes].find((r) => !r.ok);
    if (failed) {
      if (failed.status === 401) return signOut('Your session has ended: sign in again.');
      $('error').textContent = (failed.data && failed.data.detail) || `error ${failed.status}`;
      return;
    }
    state.data = { districts: districts.data, dongs: dongs.data, hours: hours.data, outcomes: outcomes.data, heat: heat.data, crimes: crimes.data };
    if (!$('crime-year').options.length) {
      $('crime-year').replaceChildren(...crimes.data.years.map((y) => el('option', { value: y, selected: y === crimes.data.year }, y)));
    }
    const asOf = districts.data.scope.refreshed_at;
    $('as-of').textContent = `${districts.data.scope.city_wide ? 'City-wide' : 'Your districts'} · as of ${asOf ? new Date(asOf).toLocaleString() : 'never refreshed'}`;
    districtsChart(districts.data.districts, crimes.data.districts);
    hoursChart(hours.data.hours);
    outcomesChart(outcomes.data.outcomes);
    dongsTable(dongs.data.dongs);
    await ensureMap();
    drawHeat(heat.data);
    state.loads += 1;
  }

  async function downloadCsv(ev) {
    ev.preventDefault();
    const aggregate = ev.target.dataset.aggregate;
    const res = await fetch(`/v1/analytics/export.csv?aggregate=${aggregate}&${query()}&${heatParams()}`, {
      headers: { Authorization: `Bearer ${state.token}` },
    });
    if (!res.ok) { $('error').textContent = `export failed (${res.status})`; return; }
    const url = URL.createObjectURL(await res.blob());
    const a = el('a', { href: url, download: `ansim-${aggregate}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // --- sign-in ----------------------------------------------------------------------------
  function showLogin(message) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
  }
  async function login(ev) {
    ev.preventDefault();
    const code = $('login-code').value.trim();
    const second = $('login-code-row').hidden || !code ? {} : (/^[0-9]{6}$/.test(code) ? { totp: code } : { recovery_code: code });
    const res = await api('POST', '/v1/auth/login', { body: { username: $('login-username').value.trim(), password: $('login-password').value, ...second } });
    if (!res.ok) {
      if (res.data && res.data.error && res.data.error.startsWith('SecondFactor')) { $('login-code-row').hidden = false; $('login-error').textContent = 'Enter the code from your authenticator app.'; return; }
      $('login-error').textContent = res.status === 401 ? 'Wrong username or password.' : `Sign-in failed (${res.status}).`;
      return;
    }
    if (!['dispatcher', 'operator'].includes(res.data.role)) { $('login-error').textContent = 'The analytics are for dispatchers and operators.'; return; }
    state.token = res.data.token;
    state.name = res.data.name;
    sessionStorage.setItem('ansim.analytics.token', state.token);
    sessionStorage.setItem('ansim.analytics.name', state.name);
    start();
  }
  async function signOut(message) {
    const token = state.token;
    state.token = null;
    sessionStorage.removeItem('ansim.analytics.token');
    if (token && !message) await api('POST', '/v1/auth/logout', { token });
    showLogin(message);
  }
  function start() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('who').textContent = state.name;
    const today = new Date(Date.now() + 9 * 3600000).toISOString().slice(0, 10);
    if (!$('until').value) $('until').value = today;
    if (!$('since').value) $('since').value = new Date(Date.now() + 9 * 3600000 - 365 * 86400000).toISOString().slice(0, 10);
    load();
  }

  $('login-form').addEventListener('submit', login);
  $('filters').addEventListener('submit', load);
  $('logout').addEventListener('click', () => signOut());
  for (const a of document.querySelectorAll('a.csv')) a.addEventListener('click', downloadCsv);
  if (state.token) start();
  else showLogin();
})();
