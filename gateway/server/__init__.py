"""The HTTP server: app factory, handlers, middlewares, the relay to clients, serving."""

from gateway.server.app import create_app, create_metrics_app, start_server
from gateway.server.serving import serve

__all__ = ["create_app", "create_metrics_app", "serve", "start_server"]
