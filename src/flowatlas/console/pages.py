"""The console's HTML: a sign-in form, one page shell, the offline API docs page.

Every value written into HTML here goes through :func:`html.escape`; pages carry no inline
script (the Content-Security-Policy forbids it): the shell loads ``/static/app.js``, which
draws the page from ``/v1`` answers with DOM text nodes, never with markup built from data.
"""

from __future__ import annotations

from html import escape

NAV = (("/", "Home"), ("/explore", "Explore"), ("/graph", "Graph"), ("/trace", "Trace"),
       ("/docs", "API docs"))


def _head(title: str, extra: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)} · flowatlas</title>"
        "<link rel=\"icon\" href=\"data:,\">"
        "<link rel=\"stylesheet\" href=\"/static/console.css\">"
        f"{extra}</head>"
    )


def signin_page(token: str, next_path: str, error: str | None = None) -> str:
    message = f"<p class=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    return (
        _head("Sign in")
        + "<body class=\"signin\"><main><h1>flowatlas</h1>"
        "<form method=\"post\" action=\"/signin\" autocomplete=\"off\">"
        f"{message}"
        "<label for=\"api_key\">API key</label>"
        "<input id=\"api_key\" name=\"api_key\" type=\"password\" required "
        "placeholder=\"fa_...\" autofocus>"
        f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(token)}\">"
        f"<input type=\"hidden\" name=\"next\" value=\"{escape(next_path)}\">"
        "<button type=\"submit\">Sign in</button></form>"
        "<p class=\"hint\">The key stays on the server: the browser keeps only a session "
        "cookie. <a href=\"/docs\">API docs</a></p></main></body></html>"
    )


def shell_page(page: str, title: str, tenant: str, role: str, csrf: str) -> str:
    """The frame every signed-in page shares; ``app.js`` fills ``<main>`` for ``page``."""
    meta = (
        f"<meta name=\"fa-csrf\" content=\"{escape(csrf)}\">"
        f"<meta name=\"fa-tenant\" content=\"{escape(tenant)}\">"
        f"<meta name=\"fa-role\" content=\"{escape(role)}\">"
        "<script type=\"module\" src=\"/static/app.js\"></script>"
    )
    nav = "".join(f"<a href=\"{href}\">{escape(label)}</a>" for href, label in NAV)
    return (
        _head(title, meta)
        + f"<body data-page=\"{escape(page)}\"><header>"
        "<a class=\"brand\" href=\"/\">flowatlas</a>"
        f"<nav>{nav}</nav>"
        "<form class=\"lookup\" method=\"get\" action=\"/ip\">"
        "<input name=\"address\" aria-label=\"address or prefix\" "
        "placeholder=\"address or prefix\" required><button>Look up</button></form>"
        f"<span class=\"who\">{escape(tenant)} <small>{escape(role)}</small></span>"
        "<form method=\"post\" action=\"/signout\">"
        f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(csrf)}\">"
        "<button type=\"submit\" id=\"signout\">Sign out</button></form>"
        "</header><main id=\"main\" aria-live=\"polite\"><p class=\"muted\">Loading…</p></main>"
        "</body></html>"
    )


def docs_page() -> str:
    """Swagger UI from the npm package swagger-ui-dist, served locally (works offline)."""
    extra = "<link rel=\"stylesheet\" href=\"/vendor/swagger-ui-dist/swagger-ui.css\">"
    return (
        _head("API docs", extra)
        + "<body class=\"docs\"><div id=\"swagger-ui\"></div>"
        "<script src=\"/vendor/swagger-ui-dist/swagger-ui-bundle.js\"></script>"
        "<script src=\"/static/docs.js\"></script></body></html>"
    )


def message_page(title: str, message: str) -> str:
    return (
        _head(title)
        + f"<body class=\"signin\"><main><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        "<p><a href=\"/signin\">Sign in</a></p></main></body></html>"
    )
