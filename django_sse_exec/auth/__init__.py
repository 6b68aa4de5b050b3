"""Who may read a stream: signed tokens, the pluggable policy, and tokens for sets and feeds.

The built-in policies keep their documented dotted paths here, for
``SSE_EXEC["AUTHORIZE"]``: ``django_sse_exec.auth.signed_token`` (the default),
``.authenticated_user``, ``.staff_only`` and ``.allow_any`` (development only);
and for ``SSE_EXEC["AUTHORIZE_CANCEL"]``, ``django_sse_exec.auth.cancel_token``
(the default: the signed URL of ``cancel_url``) or any of the others.
"""

from .cancel import cancel_token
from .policies import allow_any, authenticated_user, signed_token, staff_only

__all__ = ["allow_any", "authenticated_user", "cancel_token", "signed_token", "staff_only"]
