"""The modes a command can run in: local files, the configured store, a server."""
