"""The HTTP server on real sockets: request validation, errors, headers, heartbeats."""
