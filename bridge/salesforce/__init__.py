"""Everything that talks to Salesforce: logins, the REST client, the CDC stream, errors."""

from __future__ import annotations

from .auth import (
    PRODUCTION_LOGIN_URL,
    SANDBOX_LOGIN_URL,
    Authenticator,
    ClientCredentialsLogin,
    JwtBearerLogin,
    PasswordLogin,
    RefreshTokenLogin,
    SalesforceSession,
    SoapLogin,
    my_domain_login_url,
)
from .client import SalesforceClient
from .errors import RecordError, RecordResult, SalesforceError

__all__ = [
    "PRODUCTION_LOGIN_URL",
    "SANDBOX_LOGIN_URL",
    "Authenticator",
    "ClientCredentialsLogin",
    "JwtBearerLogin",
    "PasswordLogin",
    "RecordError",
    "RecordResult",
    "RefreshTokenLogin",
    "SalesforceClient",
    "SalesforceError",
    "SalesforceSession",
    "SoapLogin",
    "my_domain_login_url",
]
