"""End-to-end tests: real sockets, the fake upstream behind a gateway, official SDKs as clients."""
