"""The API docs page: Swagger UI from the npm package that `make install` copies into
service/web/vendor/swagger-ui/ (as the dashboard's chart library), so it needs no network."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI = "/ui/vendor/swagger-ui"
"""Where the dashboard's asset route serves the Swagger UI files."""

router = APIRouter(tags=["docs"], include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Serve Swagger UI for /openapi.json, every asset from this server."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
        # Swagger UI's default would send the schema to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
