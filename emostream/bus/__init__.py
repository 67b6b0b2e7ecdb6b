"""Message buses: the Bus interface, the embedded in-memory bus and Redis Streams."""
