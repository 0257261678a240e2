"""``/docs``: the interactive API reference, served with its assets from this package.

FastAPI's default page loads Swagger UI from a CDN, so it is blank on a network without
internet (a robot lab, an air-gapped fleet). The assets come from the ``swagger-ui-py``
package (Swagger UI 5, with its licence), a dependency of the server (decision 0008).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI's static files as the ``swagger-ui-py`` wheel installs them (a plain directory).
ASSETS_DIR = Path(str(files("swagger_ui") / "static"))
ASSETS_PATH = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; build the app with ``docs_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="api-docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
