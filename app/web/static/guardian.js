/* A guardian's view of her open alert (the link in the guardian's text message): status, what
   police did, her live position and trail. Reads /v1/guardian/{token} every few seconds. */
'use strict';

(() => {
  const { api, el, clock, metres } = Ansim;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 5000;
  const token = decodeURIComponent(location.pathname.split('/').pop() || '');

  const map = Ansim.createMap('map');
  const trailLayer = L.layerGroup().addTo(map);
  let centred = false;
  let timer = null;

  function say(text, isError) {
    $('message').textContent = text;
    $('message').className = isError ? 'error' : 'muted';
  }

  function show(v) {
    $('name').textContent = v.name || 'her alert';
    $('status').textContent = v.status.replace('_', ' ');
    $('status-text').textContent = v.status_text;
    $('received').textContent = clock(v.received_at);
    $('district').textContent = v.district || '';
    const p = v.police;
    $('police').replaceChildren(
      el('li', {}, p.acknowledged_at ? `Police acknowledged at ${clock(p.acknowledged_at)}` : 'Police have not acknowledged yet'),
      p.unit_assigned ? el('li', {}, 'A police unit is assigned') : null,
      p.volunteers_assigned ? el('li', {}, `${p.volunteers_assigned} escort volunteer(s) on their way`) : null,
      p.escalated ? el('li', {}, 'A supervisor is following the alert') : null,
    );
    trailLayer.clearLayers();
    const points = v.trail.map((t) => [t.lat, t.lon]);
    if (points.length > 1) L.polyline(points, { color: '#b3122e', weight: 3, opacity: 0.6 }).addTo(trailLayer);
    if (v.location) {
      const here = [v.location.lat, v.location.lon];
      L.circleMarker(here, { radius: 8, color: '#b3122e', fillColor: '#e0314f', fillOpacity: 0.9 })
        .bindTooltip('her latest position').addTo(trailLayer);
      if (v.location.accuracy_m) L.circle(here, { radius: v.location.accuracy_m, color: '#e0314f', weight: 1, fillOpacity: 0.1 }).addTo(trailLayer);
      $('position').textContent = `${v.location.lat.toFixed(5)}, ${v.location.lon.toFixed(5)} · ±${metres(v.location.accuracy_m)} · ${clock(v.location.captured_at)}`;
      if (!centred) { map.setView(here, 16); centred = true; } else map.panTo(here);
    } else {
      $('position').textContent = 'no position yet';
    }
  }

  async function poll() {
    const res = await api('GET', `/v1/guardian/${encodeURIComponent(token)}`);
    if (res.ok) {
      show(res.data);
      say(`updated ${clock(new Date().toISOString())}`);
    } else if (res.status === 410 || res.status === 404) {
      say(res.status === 410 ? 'This alert is closed: the link no longer shows her position.' : 'This link is not valid.', true);
      trailLayer.clearLayers();
      clearInterval(timer);
      return;
    } else {
      say(`Could not update (${res.status || 'network'}); trying again.`, true);
    }
  }

  poll();
  timer = setInterval(poll, POLL_MS);
})();
