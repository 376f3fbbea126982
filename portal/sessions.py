"""Flask's signed-cookie sessions, without building a signing serializer for requests that carry
no session cookie (most public and API requests): an empty session needs no signature, and a
request without any cookie needs no cookie parsing."""
from __future__ import annotations

from flask.sessions import SecureCookieSessionInterface


class LeanSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app, request):
        if not app.secret_key:
            return None
        if "HTTP_COOKIE" not in request.environ or not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
