"""The TLS settings of a client, as one ``ssl.SSLContext`` both transports use.

``verify``: ``True`` (the system's CAs, the default), ``False`` (no check: for a test
server only), a path to a CA bundle file (PEM) or directory (``c_rehash`` layout) to trust
instead, or an ``ssl.SSLContext`` used as it is. ``cert``: a client certificate for
servers that ask for one, a PEM file holding the certificate and its key, or a
``(certificate, key)`` pair of paths.

With ``trust_env`` and ``verify=True``, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name the CAs
to trust, as OpenSSL reads them; they are read when the client is made, so a library that
made its default context at import (aiohttp does) cannot miss them.
"""

from __future__ import annotations

import os
import ssl

from ._types import CertInit, VerifyInit

__all__ = ["tls_context", "tls_failure"]


def tls_context(
    verify: VerifyInit = True, cert: CertInit | None = None, *, trust_env: bool = False
) -> ssl.SSLContext | None:
    """The context for ``verify`` and ``cert``, or ``None`` for the library's default
    (verification against the system's CAs, no client certificate). ``ValueError`` says
    which file could not be used, and why."""
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            raise ValueError(
                "cert: with verify=SSLContext, load the client certificate into that "
                "context (context.load_cert_chain(...)) instead"
            )
        return verify
    if verify is True and cert is None and not _env_cas(trust_env):
        return None
    if verify is True or verify is False:
        cafile, capath = _env_cas(trust_env) if verify else (None, None)
        context = _context(cafile, capath)
        if not verify:
            # Both, in this order: verify_mode cannot drop while check_hostname is on.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        context = _context(None, path) if os.path.isdir(path) else _context(path, None)
    else:
        raise TypeError(
            f"verify: expected a bool, a CA bundle path or an SSLContext, got {verify!r}"
        )
    if cert is not None:
        _load_cert(context, cert)
    return context


def _env_cas(trust_env: bool) -> tuple[str | None, str | None]:
    if not trust_env:
        return None, None
    return os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None


def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        where = cafile or capath
        raise ValueError(f"verify: cannot use the CA bundle {where!r}: {_reason(exc)}") from None


def _load_cert(context: ssl.SSLContext, cert: CertInit) -> None:
    if isinstance(cert, tuple):
        if len(cert) != 2:
            raise ValueError("cert: expected a path, or a (certificate, key) pair of paths")
        certfile, keyfile = os.fspath(cert[0]), os.fspath(cert[1])
    else:
        certfile, keyfile = os.fspath(cert), None
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cert: cannot load the client certificate {certfile!r}"
            + (f" with the key {keyfile!r}" if keyfile else "")
            + f": {_reason(exc)}"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def tls_failure(exc: BaseException) -> str | None:
    """What went wrong in the TLS handshake behind ``exc`` (an HTTP library's wrapper),
    e.g. ``"certificate verify failed: unable to get local issuer certificate"``, or
    ``None`` when no ``ssl.SSLError`` is behind it."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # (aiohttp's own error subclasses ssl.CertificateError without the ssl fields: the
        # one from ssl is among its arguments.)
        message = getattr(current, "verify_message", None)
        if isinstance(current, ssl.SSLCertVerificationError) and message:
            return f"certificate verify failed: {message}"
        reason = getattr(current, "reason", None)
        if isinstance(current, ssl.SSLError) and isinstance(reason, str):
            return reason.lower().replace("_", " ")
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None
