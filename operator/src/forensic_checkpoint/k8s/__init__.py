"""The only package that talks to the API server: client builders (``client``) and typed
repositories that take and return the ``api`` models (``checkpoints``, ``nodes``, ``pods``,
``policies``, ``certificates``, ``reviews``). Paths are built in the private ``_rest`` only."""
