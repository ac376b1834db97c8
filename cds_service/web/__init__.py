"""The web layer, the only package that imports Flask: app factory, routes, authentication, request bodies."""
