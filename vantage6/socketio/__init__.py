"""A small Engine.IO v4 / Socket.IO v5 server on Django Channels, independent of vantage6.

``packets`` encodes and decodes both protocols, ``server`` holds namespaces, rooms and delivery,
``consumers`` are the long-polling and websocket transports, ``store`` is the interface of the
session state shared by all instances, ``local`` keeps unauthenticated sessions in process memory,
``bridge`` runs channel-layer work from synchronous code.
"""
