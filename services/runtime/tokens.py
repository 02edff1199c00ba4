"""The token machinery a process builds from its configuration: the verifier every process
checks tokens with, the users service's codec that issues them, and the service-token signer of
each process that calls internal RPCs (the facade; the others, for the users service's). Apart
from the server, so that the facade (which serves no gRPC) imports none of it."""

from __future__ import annotations

from services.runtime.auth import ServiceTokenSigner, TokenCodec, TokenVerifier
from services.runtime.config import ConfigError, RuntimeConfig


def token_verifier(config: RuntimeConfig) -> TokenVerifier:
    """What every process checks tokens with: public keys only."""
    return TokenVerifier(config.token_keys, issuer=config.jwt_issuer, service=config.service)


def token_codec(config: RuntimeConfig) -> TokenCodec:
    """The users service's issuer of users' tokens (the only process with the key to sign them)."""
    return TokenCodec(
        config.token_keys,
        issuer=config.jwt_issuer,
        access_ttl=config.access_token_ttl,
        service=config.service,
    )


def service_token_signer(config: RuntimeConfig) -> ServiceTokenSigner:
    """A service-token issuer's own signer (SERVICE_TOKEN_ISSUERS), with the key only it holds."""
    key = config.token_keys.service_signing
    if key is None:
        raise ConfigError(
            f"{config.service} holds no service-token key; it cannot call internal RPCs"
        )
    return ServiceTokenSigner(key, service=config.service)
