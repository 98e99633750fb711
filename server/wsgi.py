"""WSGI entry for production servers: ``gunicorn -w 4 -b 0.0.0.0:8080 server.wsgi:app``.

Configuration comes from ``FEDMARK_*`` environment variables (see server/config.py).
Set ``FEDMARK_ADMIN_TOKEN`` explicitly: with several workers a generated one would differ per worker.
"""
from server.app import create_app

app = create_app()
