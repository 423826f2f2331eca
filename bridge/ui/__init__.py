"""`bridge ui`: a local web view of runs and migrations across engines.

The same client as the CLI (`bridge.connect()`, a routing client when migration rules
exist) behind a small Starlette app; the pages are static HTML and JavaScript under
`static/` with inline SVG charts, no build step and nothing fetched from elsewhere.
Modules: `app` (routes and actions), `auth` (bind check and token gate), `views` (what
each page shows, as JSON), `timeline` (a history as chart bars), `server` (uvicorn).
Needs the `ui` extra (starlette, uvicorn); `bridge` itself imports this package only when
`bridge ui` runs.
"""
