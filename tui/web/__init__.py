"""The dashboard in a browser (``loopdeck serve``), from the same code as the terminal's.

tokens.py   who may connect: the tokens file, identities and roles (pure)
access.py   each request's identity: token, cookie, loopback and origin checks
server.py   textual-serve's server with one dashboard process per connection
"""
