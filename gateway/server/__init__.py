"""The HTTP server: app factory, handlers, middlewares, the relay to clients."""

from gateway.server.app import create_app, serve, start_server

__all__ = ["create_app", "serve", "start_server"]
