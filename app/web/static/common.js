/* Shared by the console and the phone simulator: API calls, DOM building, the offline map. */
'use strict';

const Ansim = (() => {
  /** Call our API; resolves to {ok, status, data}. Network failures resolve with status 0. */
  async function api(method, path, { token, body } = {}) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (err) {
      return { ok: false, status: 0, data: { error: 'NetworkError', detail: String(err) } };
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (err) {
        data = { error: 'BadResponse', detail: `HTTP ${response.status}` };
      }
    }
    return { ok: response.ok, status: response.status, data };
  }

  /** el('div', {class: 'x', onclick: f}, 'text', child) — text is always set as text, never HTML. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
    const h = Math.floor(m / 60);
    return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  }

  function clock(iso) {
    if (!iso) return '—';
    return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function metres(m) {
    if (m === null || m === undefined) return '—';
    return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
  }

  /** A v4 UUID; crypto.randomUUID exists only in secure contexts, getRandomValues everywhere. */
  function uuid4() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const PLACE_STYLE = {
    police: { color: '#4ea1ff', fillColor: '#4ea1ff', radius: 4.5 },
    safety_house: { color: '#3fcf8e', fillColor: '#3fcf8e', radius: 3.5 },
    store: { color: '#8a9bb0', fillColor: '#8a9bb0', radius: 2.5 },
  };

  function placeStyle(place) {
    if (place.police) return PLACE_STYLE.police;
    if (place.is_safety_house || place.kind === 'safety_house') return PLACE_STYLE.safety_house;
    return PLACE_STYLE.store;
  }

  let configRequest = null;
  /** What the pages need to start (GET /v1/web/config), asked once per page: {} if unreachable. */
  function config() {
    if (!configRequest) configRequest = api('GET', '/v1/web/config').then((res) => (res.ok ? res.data : {}));
    return configRequest;
  }

  /** Text as HTML (Leaflet's attribution is HTML; the setting is text). */
  function escapeHtml(text) {
    const node = document.createElement('span');
    node.textContent = text;
    return node.innerHTML;
  }

  const DONG_LABEL_ZOOM = 14;

  /** Seoul's dongs, faint, under the districts: where a point is, on a map without streets. */
  async function drawDongs(map, url, light) {
    let data;
    try {
      const res = await fetch(url); // public and cached by the browser (no token, no no-store)
      if (!res.ok) return;
      data = await res.json();
    } catch (err) {
      return;
    }
    L.geoJSON(data, {
      pane: 'dongs',
      renderer: L.canvas({ pane: 'dongs' }),
      interactive: false,
      style: { color: light ? '#9fb3c8' : '#2f4359', weight: 0.8, fill: false },
      onEachFeature: (f, layer) => {
        layer.bindTooltip(f.properties.EMD_KOR_NM, { permanent: true, direction: 'center', className: 'dong-label' });
      },
    }).addTo(map);
  }

  /** A Leaflet map: tiles only when the server names a tile server (ANSIM_MAP_TILE_URL); by
      default everything drawn comes from our own data, so it works offline. */
  function createMap(elementId, { light = false } = {}) {
    const map = L.map(elementId, { preferCanvas: true, zoomSnap: 0.25, zoomControl: true });
    map.attributionControl.setPrefix('Leaflet · Ansim data · boundaries: southkorea/seoul-maps (Apache-2.0)');
    map.setView([37.5665, 126.978], 11); // Seoul City Hall: the whole city
    map.createPane('dongs').style.zIndex = 350; // under the districts (the overlay pane is 400)
    const labels = () => map.getContainer().classList.toggle('show-dong-labels', map.getZoom() >= DONG_LABEL_ZOOM);
    map.on('zoomend', labels);
    labels();
    map.ansimReady = config().then((cfg) => {
      const settings = cfg.map || {};
      if (settings.tile_url) {
        map.ansimTiles = L.tileLayer(settings.tile_url, {
          attribution: escapeHtml(settings.tile_attribution || ''), maxZoom: 19,
        }).addTo(map);
      }
      if (settings.dongs_url) drawDongs(map, settings.dongs_url, light);
    });
    return map;
  }

  /** Districts (own ones highlighted) and places; returns the bounds of the own districts. */
  function drawReference(map, reference, { ownDistrictIds = null, cityWide = false, light = false } = {}) {
    const own = (f) => cityWide || (ownDistrictIds && ownDistrictIds.has(f.properties.id));
    const districts = L.geoJSON(reference.districts, {
      interactive: false,
      style: (f) => {
        const fill = map.ansimTiles ? 0.4 : 1; // over tiles the fills only tint them
        if (light) return { color: '#5b7da3', weight: 1.5, fillColor: '#ffffff', fillOpacity: 0.6 * fill };
        return own(f)
          ? { color: '#7fb3ff', weight: 2, fillColor: '#1f3247', fillOpacity: 0.55 * fill }
          : { color: '#3b5068', weight: 1, fillColor: '#16202b', fillOpacity: 0.35 * fill, dashArray: '4 4' };
      },
      onEachFeature: (f, layer) => {
        layer.bindTooltip(f.properties.name, {
          permanent: true, direction: 'center', className: own(f) ? 'district-label own' : 'district-label',
        });
      },
    }).addTo(map);
    const places = L.layerGroup().addTo(map);
    for (const place of reference.places) {
      const style = placeStyle(place);
      L.circleMarker([place.lat, place.lon], { ...style, weight: 1, fillOpacity: 0.85 })
        .bindTooltip(`${place.name}${place.police ? '' : place.is_safety_house ? ' · Safety House' : ''}`)
        .addTo(places);
    }
    let bounds = null;
    districts.eachLayer((layer) => {
      if (ownDistrictIds === null || own(layer.feature)) {
        bounds = bounds ? bounds.extend(layer.getBounds()) : L.latLngBounds(layer.getBounds().getSouthWest(), layer.getBounds().getNorthEast());
      }
    });
    if (!bounds) districts.eachLayer((layer) => { bounds = bounds ? bounds.extend(layer.getBounds()) : layer.getBounds(); });
    return { districts, places, bounds };
  }

  function mapLegend(map) {
    const legend = L.control({ position: 'bottomleft' });
    legend.onAdd = () => el('div', { class: 'legend' },
      el('span', { class: 'dot police' }), 'Police office ',
      el('span', { class: 'dot safety' }), 'Safety House ',
      el('span', { class: 'dot store' }), 'Store');
    legend.addTo(map);
  }

  return { api, config, el, duration, clock, metres, uuid4, createMap, drawReference, mapLegend, placeStyle };
})();
