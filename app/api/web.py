"""The browser pages: the police console (/console), the app for women (/app, a PWA) and the
phone simulator (/demo/phone).

Plain HTML and JavaScript from app/web/ (no build step); Leaflet and Swagger UI (the API's
/docs) come from npm (app/web/node_modules, installed by scripts/setup.sh and the Dockerfile)
and are served from here, so the pages work without internet: on a police network too."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from app.api import answers
from app.api.deps import SettingsDep
from app.errors import NotFound

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent.parent / "web"
#: The npm packages the pages use, by the name they are served under (/static/vendor/<name>/).
VENDOR = {
    "leaflet": WEB / "node_modules" / "leaflet" / "dist",
    "swagger-ui": WEB / "node_modules" / "swagger-ui-dist",
}
DEMO_CREDENTIALS = WEB.parent.parent / ".demo" / "credentials.json"

router = APIRouter(include_in_schema=False)

# The pages are the app's own code: never let a proxy or browser keep a stale one after a deploy.
_NO_CACHE = {"Cache-Control": "no-cache"}


#: The console page's placeholder for where its WebSocket is (ANSIM_CONSOLE_STREAM_URL).
STREAM_META = '<meta name="ansim-console-stream" content="">'


@router.get("/console")
async def console_page(settings: SettingsDep) -> Response:
    page = (WEB / "console.html").read_text()
    if settings.console_stream_url:
        url = html.escape(settings.console_stream_url)
        page = page.replace(STREAM_META, f'<meta name="ansim-console-stream" content="{url}">', 1)
    return HTMLResponse(page, headers=_NO_CACHE)


@router.get("/analytics")
async def analytics_page() -> FileResponse:
    """Incidents by district, dong, hour, source and outcome; the heat map (app/analytics/)."""
    return FileResponse(WEB / "analytics.html", headers=_NO_CACHE)


@router.get("/demo/phone")
async def phone_page() -> FileResponse:
    return FileResponse(WEB / "phone.html", headers=_NO_CACHE)


@router.get("/app")
async def app_page() -> FileResponse:
    """The app for women (docs/app.md): the shell its service worker caches for offline starts."""
    return FileResponse(WEB / "app.html", headers=_NO_CACHE)


@router.get("/app/manifest.webmanifest")
async def app_manifest() -> FileResponse:
    return FileResponse(
        WEB / "app.webmanifest", media_type="application/manifest+json", headers=_NO_CACHE
    )


@router.get("/app/sw.js")
async def app_service_worker() -> FileResponse:
    # Served under /app/ but controlling /app itself (a scope of "/app", not "/app/").
    return FileResponse(
        WEB / "static" / "app" / "sw.js",
        media_type="text/javascript",
        headers={**_NO_CACHE, "Service-Worker-Allowed": "/app"},
    )


@router.get("/demo")
async def demo_index() -> RedirectResponse:
    return RedirectResponse("/demo/phone")


def demo_credentials(environment: str, path: Path = DEMO_CREDENTIALS) -> dict[str, Any] | None:
    """What `ansim demo` saved, trimmed to what the pages offer; only in development."""
    if environment != "development" or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        member = saved["member"]
        return {
            "member": {
                "name": "Jiyoung (demo)",
                "token": member["token"],
                "pin": member["pin"],
                "duress_pin": member["duress_pin"],
            },
            "dispatchers": [
                {
                    "username": d["username"],
                    "password": d["password"],
                    "district": d["district"],
                    "district_name": d.get("district_name"),
                }
                for d in saved.get("dispatchers", [])
            ],
            "supervisor": {
                "username": saved["supervisor"]["username"],
                "password": saved["supervisor"]["password"],
            }
            if "supervisor" in saved
            else None,
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("demo credentials at %s unreadable: %s", path, exc)
        return None


@router.get(
    "/v1/web/config", summary="What the pages need to start", response_model=answers.WebConfig
)
async def web_config(settings: SettingsDep) -> dict[str, Any]:
    """Always 200. ``demo`` carries the demo sign-in details in development only; ``map`` the
    tile server (none by default: the maps work offline) and where the dong layer is."""
    return {
        "environment": settings.environment,
        "demo": demo_credentials(settings.environment),
        "map": {
            "tile_url": settings.map_tile_url or None,
            "tile_attribution": settings.map_tile_attribution or None,
            "dongs_url": "/v1/map/dongs" if settings.map_dongs else None,
        },
    }


# StaticFiles guards against path traversal and answers ETag / If-None-Match; routes (not a mount)
# keep the whole web edge in this one router.
_static = StaticFiles(directory=WEB / "static", check_dir=False)
_vendor = {name: StaticFiles(directory=path, check_dir=False) for name, path in VENDOR.items()}
for _name, _path in VENDOR.items():
    if not _path.is_dir():
        log.warning("%s missing at %s: run scripts/setup.sh (it runs npm ci)", _name, _path)


@router.get("/static/web/{path:path}")
async def web_static(path: str, request: Request) -> Response:
    return await _static.get_response(path, request.scope)


@router.get("/static/vendor/{package}/{path:path}")
async def vendor_static(package: str, path: str, request: Request) -> Response:
    files = _vendor.get(package)
    if files is None:
        raise NotFound(f"no vendored package {package!r}")
    return await files.get_response(path, request.scope)


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    """Swagger UI from our own copy, not a CDN (FastAPI's default page is blank offline)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Ansim API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
    )
