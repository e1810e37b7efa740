"""A small Engine.IO v4 / Socket.IO v5 server on Django Channels, independent of vantage6.

``packets`` encodes and decodes both protocols, ``server`` holds namespaces, rooms and delivery,
``consumers`` are the long-polling and websocket transports, ``store`` is the shared session state.
"""
