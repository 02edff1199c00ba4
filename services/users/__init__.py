"""The users service: accounts, credentials, sessions and the tokens every service checks."""
