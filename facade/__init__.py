"""The REST facade: an aiohttp gateway that transcodes HTTP/JSON into the domain services' gRPC."""
