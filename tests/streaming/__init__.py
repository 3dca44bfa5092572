"""Pure unit tests of the streaming core (`gateway.streaming`): no sockets."""
