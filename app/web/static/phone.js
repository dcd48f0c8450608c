/* The phone simulator: raises an SOS through the real phone API (docs/api.md), sends the trail,
   shows who is coming, cancels with the PIN (or the duress PIN). */
'use strict';

(() => {
  const { api, el, metres, uuid4 } = Ansim;
  const $ = (id) => document.getElementById(id);
  const CLOSED = new Set(['resolved', 'false_alarm', 'cancelled']);
  const POLL_MS = 2000;

  const state = {
    token: sessionStorage.getItem('ansim.phone.token'),
    position: null,
    alert: null, // {id, clientAlertId, status}
    pollTimer: null,
  };
  window.ansimPhone = state;

  const map = Ansim.createMap('map', { light: true });
  window.ansimPhoneMap = map; // tests click at a given lat/lon through it
  Ansim.mapLegend(map);
  const here = L.layerGroup().addTo(map);
  const placesLayer = L.layerGroup().addTo(map);
  let referenceDrawn = false;

  function say(text, isError) {
    $('message').textContent = text;
    $('message').className = isError ? 'error' : 'muted';
  }

  // --- sign-in with a member token ---------------------------------------------------------
  async function signIn(token) {
    const res = await api('GET', '/v1/map/reference', { token });
    if (!res.ok) {
      $('signin-state').textContent = res.status === 401 ? 'That token is not valid.' : `Could not check the token (${res.status}).`;
      $('signin-state').className = 'error';
      return;
    }
    state.token = token;
    sessionStorage.setItem('ansim.phone.token', token);
    $('signin-state').textContent = 'Signed in as a member.';
    $('signin-state').className = 'muted';
    $('sos').disabled = false;
    $('silent-sos').disabled = false;
    if (!referenceDrawn) {
      referenceDrawn = true;
      const drawn = Ansim.drawReference(map, res.data, { ownDistrictIds: null, light: true });
      if (drawn.bounds) map.fitBounds(drawn.bounds, { padding: [10, 10] });
    }
  }

  $('signin').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (token) signIn(token);
  });

  async function offerDemo() {
    const { demo } = await Ansim.config();
    if (!demo) return;
    $('use-demo').hidden = false;
    $('use-demo').addEventListener('click', () => {
      $('token').value = demo.member.token;
      $('pin-hint').textContent = `Demo PIN ${demo.member.pin}; duress PIN ${demo.member.duress_pin} (looks like a cancel, but escalates).`;
      $('pin-hint').hidden = false;
      signIn(demo.member.token);
    });
  }

  // --- position -----------------------------------------------------------------------------
  function setPosition(latlng) {
    state.position = { lat: latlng.lat, lon: latlng.lng };
    here.clearLayers();
    const accuracy = Number($('accuracy').value) || 0;
    L.circleMarker(latlng, { radius: 8, color: '#d7263d', fillColor: '#d7263d', fillOpacity: 1 }).addTo(here);
    if (accuracy) L.circle(latlng, { radius: accuracy, color: '#d7263d', weight: 1, fillOpacity: 0.1 }).addTo(here);
    $('position').textContent = `${state.position.lat.toFixed(5)}, ${state.position.lon.toFixed(5)} ± ${accuracy} m`;
    $('position').className = '';
  }

  map.on('click', (ev) => {
    setPosition(ev.latlng);
    if (state.alert && !CLOSED.has(state.alert.status) && $('follow').checked) sendPoint();
  });

  function location() {
    if (!state.position) return undefined;
    const accuracy = Number($('accuracy').value);
    return {
      lat: state.position.lat,
      lon: state.position.lon,
      accuracy_m: Number.isFinite(accuracy) ? accuracy : undefined,
      captured_at: new Date().toISOString(),
    };
  }

  // --- SOS ----------------------------------------------------------------------------------
  async function sos(silent) {
    if (!state.token) return;
    const clientAlertId = uuid4();
    const body = { client_alert_id: clientAlertId, trigger: 'button', silent, location: location() };
    $('sos').disabled = true;
    $('silent-sos').disabled = true;
    say('Sending…');
    let res;
    // The same client_alert_id makes retries safe: the server keeps one incident.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      res = await api('POST', '/v1/alerts', { token: state.token, body });
      if (res.ok || (res.status >= 400 && res.status < 500)) break;
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
    $('sos').disabled = false;
    $('silent-sos').disabled = false;
    if (!res.ok) {
      say(`The SOS failed: ${res.data.detail || res.status}. Call 112.`, true);
      return;
    }
    const data = res.data;
    state.alert = { id: data.incident_id, clientAlertId, status: data.status };
    $('alert').hidden = false;
    $('alert-id').textContent = data.incident_id.slice(0, 8);
    $('alert-status').textContent = data.status;
    $('alert-district').textContent = data.district ? data.district.name : 'no district';
    $('alert-warnings').textContent = data.warnings.length ? `Warnings: ${data.warnings.map((w) => w.code).join(', ')}` : '';
    showPlaces(data.nearest_safe_places);
    say(silent ? 'Silent SOS sent. Police have been alerted.' : 'SOS sent. Police have been alerted.');
    poll();
  }

  function showPlaces(places) {
    placesLayer.clearLayers();
    $('places').replaceChildren(...(places.length
      ? places.map((p) => {
        L.circleMarker([p.lat, p.lon], { radius: 9, color: '#1b8a5a', weight: 3, fill: false })
          .bindTooltip(`${p.name} · ${metres(p.distance_m)}`).addTo(placesLayer);
        return el('li', {}, el('strong', {}, p.name), ` · ${metres(p.distance_m)}`, p.phone ? ` · ☎ ${p.phone}` : '',
          p.is_safety_house ? ' · Safety House' : '');
      })
      : [el('li', { class: 'muted' }, 'none known (no location?)')]));
  }

  async function poll() {
    clearTimeout(state.pollTimer);
    if (!state.alert) return;
    const res = await api('GET', `/v1/alerts/${state.alert.id}`, { token: state.token });
    if (res.ok) {
      const view = res.data;
      state.alert.status = view.status;
      $('alert-status').textContent = view.status;
      $('alert-district').textContent = view.district ? view.district.name : 'no district';
      $('alert-police').textContent = view.police_acknowledged ? 'Police: acknowledged, help is on the way' : 'Police: not yet acknowledged';
      $('alert').classList.toggle('police-ack', view.police_acknowledged);
      $('responders').replaceChildren(...(view.responders.length
        ? view.responders.map((r) => el('li', { class: 'responder' }, `${r.name} · badge ${r.badge_number || '—'}`))
        : [el('li', { class: 'muted' }, 'nobody assigned yet')]));
      if (view.nearest_safe_places.length) showPlaces(view.nearest_safe_places);
    }
    if (!CLOSED.has(state.alert.status)) state.pollTimer = setTimeout(poll, POLL_MS);
  }

  async function sendPoint() {
    if (!state.alert || !state.position) return;
    const res = await api('POST', `/v1/alerts/${state.alert.id}/locations`, { token: state.token, body: { points: [location()] } });
    say(res.ok ? `Trail point sent (${res.data.stored} stored).` : `Trail point failed: ${res.data.detail || res.status}`, !res.ok);
  }

  async function cancel(ev) {
    ev.preventDefault();
    if (!state.alert) return;
    const pin = $('pin').value;
    if (!pin) return $('pin').focus();
    const res = await api('POST', `/v1/alerts/${state.alert.id}/cancel`, { token: state.token, body: { pin } });
    $('pin').value = '';
    if (res.ok) {
      state.alert.status = res.data.status;
      $('alert-status').textContent = res.data.status;
      say('Alert cancelled.');
      poll();
    } else {
      say(res.status === 403 ? 'Wrong PIN.' : `Cancel failed: ${res.data.detail || res.status}`, true);
    }
  }

  $('sos').addEventListener('click', () => sos(false));
  $('silent-sos').addEventListener('click', () => sos(true));
  $('send-point').addEventListener('click', sendPoint);
  $('cancel-form').addEventListener('submit', cancel);
  offerDemo();
  if (state.token) {
    $('token').value = state.token;
    signIn(state.token);
  }
})();
