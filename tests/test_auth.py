"""Unit tests of auth.py (tokens, policies, authorize), the template tag and the policy checks."""

from __future__ import annotations

import functools
import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core import signing
from django.core.checks import run_checks
from django.core.exceptions import PermissionDenied
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory, override_settings

from django_sse_exec import stream_url
from django_sse_exec.auth import policies as auth
from django_sse_exec.auth.policies import SALT, authorize, check_token, make_token

EID = "exec-42"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def request_for(query: str = "", user=None):
    """A GET to the stream with ``query``; ``user`` as AuthenticationMiddleware would set it."""
    request = RequestFactory().get(f"/sse/executions/{EID}/events{query}")
    if user is not None:
        async def auser():
            return user

        request.user = user
        request.auser = auser
    return request


def user(pk=5, **flags) -> User:
    return User(pk=pk, username=f"u{pk}", **flags)


# -- tokens ------------------------------------------------------------------


def test_token_grants_its_execution_only():
    token = make_token(EID)
    assert check_token(token, EID) is None
    assert check_token(token, EID + "x") == "token is for another execution"
    assert check_token(token, "exec-4") == "token is for another execution"


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token):
    assert check_token(token, EID) == "missing token"


def test_expired_token():
    expired = signing.dumps({"e": EID, "x": int(time.time()) - 1}, salt=SALT, compress=True)
    assert check_token(expired, EID) == "expired token"
    assert check_token(make_token(EID, max_age=60), EID) is None


def test_token_expiring_this_second_is_expired():
    """Expiry is exclusive: a token whose expiry is now (what max_age=0 used to mint,
    valid for up to a second) is refused."""
    now = signing.dumps({"e": EID, "x": int(time.time())}, salt=SALT, compress=True)
    assert check_token(now, EID) == "expired token"


@pytest.mark.parametrize("age", [0, 0.0, -1, -0.5])
def test_token_age_must_be_above_zero(age):
    with pytest.raises(ValueError, match="above 0"):
        make_token(EID, max_age=age)
    with pytest.raises(ValueError, match="above 0"):
        stream_url(EID, max_age=age)


def test_token_age_is_bounded_by_the_limit(settings):
    with pytest.raises(ValueError, match="TOKEN_MAX_AGE_LIMIT"):
        stream_url(EID, max_age=1e15)
    with pytest.raises(ValueError, match="TOKEN_MAX_AGE_LIMIT"):
        make_token(EID, max_age=24 * 3600 + 1)
    assert check_token(make_token(EID, max_age=24 * 3600), EID) is None  # the default limit
    settings.SSE_EXEC = {"TOKEN_MAX_AGE_LIMIT": 7 * 24 * 3600}
    week = make_token(EID, max_age=7 * 24 * 3600)
    assert check_token(week, EID) is None
    settings.SSE_EXEC = {}
    # A token minted for longer than the limit now allows is refused.
    assert check_token(week, EID) == "expired token"


def test_default_age_is_token_max_age(settings):
    settings.SSE_EXEC = {"TOKEN_MAX_AGE": 120}
    payload = signing.loads(make_token(EID), salt=SALT)
    assert 120 <= payload["x"] - time.time() <= 122


def test_tampered_tokens_are_invalid():
    token = make_token(EID)
    value, _, signature = token.rpartition(":")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert check_token(f"{value}:{flipped}", EID) == "invalid token"
    # re-point the payload at another execution, keep the signature
    forged = signing.dumps({"e": "exec-43", "x": int(time.time()) + 60}, salt=SALT).split(":")[0]
    assert check_token(f"{forged}:{token.split(':', 1)[1]}", "exec-43") == "invalid token"
    assert check_token("abc", EID) == "invalid token"
    assert check_token(token + "x" * 2000, EID) == "invalid token"  # over the length limit


def test_tokens_signed_for_other_purposes_or_keys_are_invalid():
    payload = {"e": EID, "x": int(time.time()) + 60}
    assert check_token(signing.dumps(payload), EID) == "invalid token"  # default salt
    assert check_token(signing.dumps(payload, salt="other"), EID) == "invalid token"
    with override_settings(SECRET_KEY="another-secret-key-another-secret-key-0123456789"):
        foreign = make_token(EID)
    assert check_token(foreign, EID) == "invalid token"
    # validly signed, but not a token's shape
    assert check_token(signing.dumps([EID], salt=SALT), EID) == "invalid token"
    assert check_token(signing.dumps({"e": EID, "x": "never"}, salt=SALT), EID) == "invalid token"


def test_tokens_survive_a_key_rotation_through_fallbacks():
    old_key = "the-previous-secret-key-of-this-deployment-0123456789"
    with override_settings(SECRET_KEY=old_key):
        token = make_token(EID)
    with override_settings(SECRET_KEY_FALLBACKS=[old_key]):
        assert check_token(token, EID) is None
    assert check_token(token, EID) == "invalid token"


def test_user_bound_token():
    token = make_token(EID, user=user(5))
    assert check_token(token, EID, user_pk=5) is None
    assert check_token(token, EID, user_pk="5") is None
    assert check_token(token, EID, user_pk=6) == "token is for another user"
    assert check_token(token, EID) == "login required"
    assert check_token(make_token(EID, user=7), EID, user_pk=7) is None  # a primary key works too


@pytest.mark.parametrize("anonymous", [AnonymousUser(), User()])
def test_cannot_bind_to_anonymous_user(anonymous):
    with pytest.raises(ValueError, match="anonymous"):
        make_token(EID, user=anonymous)


@pytest.mark.parametrize("age", [float("inf"), float("nan"), "inf"])
def test_token_age_must_be_finite(age):
    with pytest.raises(ValueError, match="finite"):
        make_token(EID, max_age=age)


@pytest.mark.parametrize("bad", ["..", "a:b", "a b", ""])
def test_no_token_for_invalid_execution_id(bad):
    with pytest.raises(ValueError, match="invalid execution_id"):
        make_token(bad)
    with pytest.raises(ValueError, match="invalid execution_id"):
        stream_url(bad)


def test_stream_url_is_relative_and_carries_a_valid_token():
    url = stream_url(EID, max_age=30)
    assert url.startswith(f"/sse/executions/{EID}/events?token=")
    assert check_token(token_of(url), EID) is None


# -- built-in policies ---------------------------------------------------------


async def test_signed_token_policy():
    url = stream_url(EID)
    assert await authorize(request_for("?" + urlsplit(url).query), EID) is None
    assert await authorize(request_for(), EID) == "missing token"
    assert await authorize(request_for("?token=junk"), EID) == "invalid token"
    twice = "?" + urlsplit(url).query + "&" + urlsplit(url).query
    assert await authorize(request_for(twice), EID) == "repeated token"


async def test_signed_token_policy_with_bound_user():
    query = "?" + urlsplit(stream_url(EID, user=user(5))).query
    assert await authorize(request_for(query, user(5)), EID) is None
    assert await authorize(request_for(query, user(6)), EID) == "token is for another user"
    assert await authorize(request_for(query, AnonymousUser()), EID) == "login required"
    assert await authorize(request_for(query), EID) == "authentication middleware is not installed"


@override_settings(SSE_EXEC={"AUTHORIZE": "django_sse_exec.auth.authenticated_user"})
async def test_authenticated_user_policy():
    assert await authorize(request_for(user=user(1)), EID) is None
    assert await authorize(request_for(user=AnonymousUser()), EID) == "login required"
    assert await authorize(request_for(user=user(1, is_active=False)), EID) == "login required"
    assert await authorize(request_for(), EID) == "authentication middleware is not installed"


@override_settings(SSE_EXEC={"AUTHORIZE": "django_sse_exec.auth.staff_only"})
async def test_staff_only_policy():
    assert await authorize(request_for(user=user(1, is_staff=True)), EID) is None
    assert await authorize(request_for(user=user(1)), EID) == "staff only"
    assert await authorize(request_for(user=user(1, is_staff=True, is_active=False)), EID) == "staff only"
    assert await authorize(request_for(user=AnonymousUser()), EID) == "staff only"


@override_settings(SSE_EXEC={"AUTHORIZE": "django_sse_exec.auth.allow_any"})
async def test_allow_any_policy():
    assert await authorize(request_for(), EID) is None


# -- custom policies: sync or async, fail closed --------------------------------


def sync_true(request, execution_id):
    return execution_id == EID


def sync_truthy(request, execution_id):
    return "yes"


def sync_denies(request, execution_id):
    raise PermissionDenied("not your execution")


def sync_crashes(request, execution_id):
    raise RuntimeError("database is down at /secret/path")


async def async_true(request, execution_id):
    return True


class AsyncCallable:
    def __init__(self, result):
        self.result = result

    async def __call__(self, request, execution_id):
        return self.result


def returns_coroutine(request, execution_id):
    return async_true(request, execution_id)


async def async_result(result, request, execution_id):
    return result


@pytest.mark.parametrize("policy, expected", [
    ("tests.test_auth.sync_true", None),
    ("tests.test_auth.async_true", None),
    (sync_true, None),
    (AsyncCallable(True), None),
    (AsyncCallable(False), "forbidden"),
    (AsyncCallable(1), "forbidden"),
    (functools.partial(async_result, True), None),
    (functools.partial(async_result, "yes"), "forbidden"),
    (returns_coroutine, None),
    ("tests.test_auth.sync_truthy", "forbidden"),
    ("tests.test_auth.sync_denies", "not your execution"),
    ("tests.test_auth.sync_crashes", "authorization failed"),
    ("tests.test_auth.no_such_policy", "authorization failed"),
    ("no_such_module.policy", "authorization failed"),
])
async def test_custom_policies_fail_closed(policy, expected, caplog):
    with override_settings(SSE_EXEC={"AUTHORIZE": policy}):
        assert await authorize(request_for(), EID) == expected
    if expected == "authorization failed":
        assert "authorization policy failed" in caplog.text


async def test_policy_sees_the_execution_id():
    with override_settings(SSE_EXEC={"AUTHORIZE": sync_true}):
        assert await authorize(request_for(), "exec-other") == "forbidden"


async def test_policy_reason_is_short(settings):
    settings.SSE_EXEC = {"AUTHORIZE": functools.partial(_deny_with, "x" * 5000)}
    assert await authorize(request_for(), EID) == "x" * 200


async def _deny_with(reason, request, execution_id):
    raise PermissionDenied(reason)


# -- template tag ---------------------------------------------------------------


def render(source: str, **context) -> str:
    return Template("{% load sse_exec %}" + source).render(Context(context))


def test_template_tag_renders_a_working_url():
    url = render("{% sse_stream_url eid %}", eid=EID)
    assert url.startswith(f"/sse/executions/{EID}/events?token=")
    assert "&" not in url and '"' not in url and "<" not in url
    assert check_token(token_of(url), EID) is None


def test_template_tag_user_max_age_and_as():
    out = render('{% sse_stream_url eid user=u max_age=60 as url %}<i data-u="{{ url }}">',
                 eid=EID, u=user(9))
    url = out.split('"')[1]
    assert check_token(token_of(url), EID, user_pk=9) is None
    assert check_token(token_of(url), EID, user_pk=8) == "token is for another user"
    payload = signing.loads(token_of(url), salt=SALT)
    assert 60 <= payload["x"] - time.time() <= 62


def test_template_tag_refuses_bad_input():
    with pytest.raises(ValueError, match="invalid execution_id"):
        render("{% sse_stream_url eid %}", eid="../x")
    with pytest.raises(ValueError, match="anonymous"):
        render("{% sse_stream_url eid user=u %}", eid=EID, u=AnonymousUser())
    with pytest.raises(TemplateSyntaxError):
        render("{% sse_stream_url %}")


# -- system checks -------------------------------------------------------------


def check_ids() -> list[str]:
    return [m.id for m in run_checks() if m.id.startswith("django_sse_exec.")]


@pytest.mark.parametrize("policy", ["django_sse_exec.auth.allow_any", auth.allow_any])
def test_allow_any_warns_with_debug_off(settings, policy):
    settings.SSE_EXEC = {"AUTHORIZE": policy}
    settings.DEBUG = False
    assert "django_sse_exec.W003" in check_ids()
    settings.DEBUG = True
    assert "django_sse_exec.W003" not in check_ids()


@pytest.mark.parametrize("policy", ["django_sse_exec.auth.signed_token",
                                    "django_sse_exec.auth.authenticated_user"])
def test_other_policies_do_not_warn(settings, policy):
    settings.SSE_EXEC = {"AUTHORIZE": policy}
    settings.DEBUG = False
    assert not {"django_sse_exec.W003", "django_sse_exec.E003"} & set(check_ids())


@pytest.mark.parametrize("policy", ["no_such_module.policy", "django_sse_exec.conf.DEFAULTS"])
def test_unusable_policy_is_an_error(settings, policy):
    settings.SSE_EXEC = {"AUTHORIZE": policy}
    assert "django_sse_exec.E003" in check_ids()


@pytest.mark.parametrize("age, bad", [(3600, False), (0.5, False), (0, True), (-1, True),
                                      ("1h", True), (None, True), (float("inf"), True),
                                      (24 * 3600, False), (24 * 3600 + 1, True)])
def test_token_max_age_check(settings, age, bad):
    settings.SSE_EXEC = {"TOKEN_MAX_AGE": age}
    assert ("django_sse_exec.E004" in check_ids()) is bad


async def test_policy_failure_is_logged_not_shown(caplog):
    caplog.set_level(logging.ERROR, logger="django_sse_exec")
    with override_settings(SSE_EXEC={"AUTHORIZE": sync_crashes}):
        reason = await authorize(request_for(), EID)
    assert reason == "authorization failed" and "/secret/path" not in reason
    assert "database is down at /secret/path" in caplog.text
