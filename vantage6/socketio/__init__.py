"""A small Engine.IO v4 / Socket.IO v5 server on Django Channels, independent of vantage6.

``packets`` encodes and decodes both protocols, ``server`` holds the sessions of this process, their
namespaces, rooms and delivery, ``consumers`` are the long-polling and websocket transports, ``store``
is the session and the interface of the processes' liveness rows, ``bridge`` runs channel-layer work
from synchronous code.
"""
