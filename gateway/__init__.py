"""sse-gateway: an SSE reverse-proxy gateway for LLM chat APIs."""

__version__ = "0.1.0"
