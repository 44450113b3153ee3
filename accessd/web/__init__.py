"""The office console: staff and residents in a browser, over the same library as
`accessctl` (app.py: the ASGI app; routes.py: every route and who may use it;
views/: one module per noun; templates/: Jinja2 pages; static/: htmx, CSS, JS)."""
