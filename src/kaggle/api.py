"""Talk to Kaggle through the `kaggle` package: find credentials, download, submit, explain failures.

The `kaggle` package is loud and sharp-edged when used as a library: importing it authenticates and
prints an 18-line help text when that fails, `authenticate()` calls `exit(1)`, and HTTP errors come
back as raw exceptions. This module keeps all of that away from the user: credentials are looked up
here first (so "none" is said precisely and costs no network), every failure becomes a KaggleError
whose message says what to do, and no secret ever reaches the terminal.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import io
import json
import os
from pathlib import Path
import shutil
import socket
import sys
from typing import Mapping

import requests
import urllib3

API_HOST = "api.kaggle.com"
TOKEN_PAGE = "https://www.kaggle.com/settings/api"
PARTIAL_DIR = ".download"   # inside the data dir: the kaggle package resumes a partial file kept here
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
NETWORK_ERRORS = (
    requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError, urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.TimeoutError, ConnectionError, TimeoutError, socket.gaierror,
)
BROKEN_OFF = (requests.exceptions.ChunkedEncodingError, ConnectionResetError)   # mid-download


class KaggleError(Exception):
    """A download or submission that cannot go on; the message says what to do and holds no secret."""


@dataclass(frozen=True)
class Credentials:
    source: str                                  # where they came from, for messages
    secrets: tuple[str, ...] = field(repr=False)  # values never to print


def data_page(competition: str) -> str:
    return f"https://www.kaggle.com/c/{competition}/data"


# ---------------------------------------------------------------- credentials

def config_dir(env: Mapping[str, str], home: Path) -> Path:
    """Where the kaggle package looks for kaggle.json (same order as KaggleApi.config_dir)."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"])
    legacy = home / ".kaggle"
    if legacy.exists() or not sys.platform.startswith("linux"):
        return legacy
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"


def credential_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """Every file the kaggle package may read a secret from (existing or not)."""
    files = [config_dir(env, home) / "kaggle.json", home / ".kaggle" / "access_token",
             home / ".kaggle" / "access_token.txt", home / ".kaggle" / "credentials.json"]
    token_file = _existing_file(env.get("KAGGLE_API_TOKEN", "").strip())
    return files + ([token_file] if token_file else [])


def find_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> Credentials | None:
    """The credentials the kaggle package would use, in its order of preference, or None.

    Order: KAGGLE_API_TOKEN (a token or a file holding one), ~/.kaggle/access_token[.txt],
    KAGGLE_USERNAME + KAGGLE_KEY over kaggle.json, then ~/.kaggle/credentials.json (`kaggle auth login`).
    Reads files only; no network.
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else Path(home)
    token = env.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        path = _existing_file(token)          # kaggle also accepts a path to a token file
        if path is None:
            return Credentials("KAGGLE_API_TOKEN", (token,))
        return _credentials(f"KAGGLE_API_TOKEN ({_tilde(path, home)})", _read_text(path))
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        if _read_text(path):
            return _credentials(_tilde(path, home), _read_text(path))
    path = config_dir(env, home) / "kaggle.json"
    values = _read_json(path)
    for key in ("username", "key"):               # the environment overrides the file, as in kaggle
        if env.get(f"KAGGLE_{key.upper()}"):
            values[key] = env[f"KAGGLE_{key.upper()}"]
    if values.get("username") and values.get("key"):
        source = "KAGGLE_KEY" if env.get("KAGGLE_KEY") else _tilde(path, home)
        return Credentials(source, (str(values["key"]),))
    path = home / ".kaggle" / "credentials.json"
    oauth = _read_json(path)
    return _credentials(_tilde(path, home) + " (kaggle auth login)", oauth.get("refresh_token"),
                        oauth.get("access_token"))


def permission_warnings(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[str]:
    """A warning for each credential file that group or others may read (the fix is chmod 600)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else Path(home)
    warnings = []
    for path in credential_files(env, home):
        try:
            loose = os.name != "nt" and path.is_file() and path.stat().st_mode & 0o044
        except OSError:
            continue
        if loose:
            shown = _tilde(path, home)
            warnings.append(f"warning: {shown} is readable by other users; fix it with `chmod 600 {shown}`")
    return warnings


def _credentials(source: str, secret, *more) -> Credentials | None:
    """Credentials when secret is a non-empty string; more: other values to keep off the screen."""
    if not isinstance(secret, str) or not secret.strip():
        return None
    return Credentials(source, tuple(str(s).strip() for s in (secret, *more) if s and str(s).strip()))


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return ""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(_read_text(path) or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _existing_file(text: str) -> Path | None:
    try:
        return Path(text) if text and Path(text).is_file() else None
    except (OSError, ValueError):                  # a long token is not a valid file name
        return None


def _tilde(path: Path, home: Path) -> str:
    try:
        return str(Path("~") / Path(path).relative_to(home))
    except ValueError:
        return str(path)


def missing_credentials_message(hint: str, env: Mapping[str, str] | None = None,
                                home: Path | None = None) -> str:
    """What to do when find_credentials found nothing; names a half-set configuration precisely."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else Path(home)
    found = config_dir(env, home) / "kaggle.json"
    # ~/.kaggle wins over the XDG folder once it exists, so it is the place to suggest
    suggest = _tilde(found if env.get("KAGGLE_CONFIG_DIR") else home / ".kaggle" / "kaggle.json", home)
    notes = []
    if found.exists():
        try:
            json.loads(_read_text(found) or "{}")
            what = "holds no \"username\" and \"key\""
        except ValueError as e:   # a hand-edited file: say where it breaks, not that fields are missing
            what = f"is not valid JSON ({e})"
        notes.append(f"{_tilde(found, home)} exists but {what}")
    half = [v for v in ("KAGGLE_USERNAME", "KAGGLE_KEY") if env.get(v)]
    if len(half) == 1:
        notes.append(f"{half[0]} is set but not its partner")
    note = f" ({'; '.join(notes)})" if notes else ""
    return (f"no Kaggle credentials found{note}. Create an API token on {TOKEN_PAGE}, then either\n"
            f"  - set the KAGGLE_API_TOKEN environment variable to it, or\n"
            f"  - save a (legacy) kaggle.json from the same page as {suggest} (then `chmod 600 {suggest}`),"
            f" or set KAGGLE_USERNAME and KAGGLE_KEY;\n"
            f"{hint}")


# ---------------------------------------------------------------- output hygiene

def scrub(text: str, secrets) -> str:
    """text with every secret (4+ characters) replaced by '***'."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


class _Scrubbed(io.TextIOBase):
    """A text stream that masks secrets before passing writes on (the kaggle package prints errors)."""

    def __init__(self, stream, secrets):
        self._stream, self._secrets = stream, tuple(secrets)

    def write(self, s):
        self._stream.write(scrub(s, self._secrets))
        return len(s)

    def flush(self):
        self._stream.flush()

    def isatty(self):
        return self._stream.isatty()

    def fileno(self):      # tqdm asks for the terminal width
        return self._stream.fileno()

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", "utf-8")


@contextlib.contextmanager
def _scrubbed_output(secrets):
    with contextlib.redirect_stdout(_Scrubbed(sys.stdout, secrets)), \
            contextlib.redirect_stderr(_Scrubbed(sys.stderr, secrets)):
        yield


@contextlib.contextmanager
def _silenced():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------- the API

def make_api():
    """A fresh, unauthenticated KaggleApi (tests replace this function with a fake).

    Importing `kaggle` runs `kaggle/__init__.py`, which authenticates and prints a help text when
    that fails; the import is silenced so the user sees our message instead.
    """
    try:
        with _silenced():
            from kaggle.api.kaggle_api_extended import KaggleApi
    except Exception as e:  # ImportError, or the package failing to create its config folder
        raise KaggleError(f"the kaggle package failed to load ({type(e).__name__}: {e}); "
                          f"reinstall it with `.venv/bin/pip install kaggle six`") from None
    return KaggleApi()


def check_reachable(host: str = API_HOST, port: int = 443, timeout: float = 10.0) -> None:
    """Fail fast when Kaggle's API host cannot be reached.

    The kaggle package sends its first request without a timeout, so a firewall that drops packets
    would hang it forever. Behind a proxy only the proxy can tell, so the check is skipped there.
    """
    behind_proxy = any(os.environ.get(v) for v in PROXY_VARS)
    if behind_proxy or os.environ.get("KAGGLE_API_ENVIRONMENT", "PROD") != "PROD":
        return   # only the proxy, or a Kaggle developer's own server, can tell
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror:
        raise ConnectionError(f"cannot resolve {host}") from None
    except OSError as e:   # refused, unreachable network, timeout
        raise ConnectionError(f"{host}:{port}: {e.strerror or type(e).__name__}") from None


def download_competition(competition: str, data_dir: Path, creds: Credentials, hint: str) -> Path:
    """Download the competition's zip into data_dir/<competition>.zip and return that path.

    The kaggle package writes into data_dir/.download/ (where it can resume an interrupted file);
    only a complete zip is moved into place, atomically.
    Raises: KaggleError with a message that ends with `hint` where downloading by hand helps.
    """
    partial = Path(data_dir) / PARTIAL_DIR
    _call(lambda api: api.competition_download_files(competition, path=str(partial), quiet=False),
          competition, creds, hint, "download")
    got = partial / f"{competition}.zip"
    if not got.is_file():
        found = sorted(p.name for p in partial.iterdir())
        raise KaggleError(f"Kaggle delivered no {got.name} (found: {found}); {hint}")
    final = Path(data_dir) / got.name
    os.replace(got, final)
    shutil.rmtree(partial, ignore_errors=True)
    return final


def submit_file(competition: str, path: Path, message: str, creds: Credentials, hint: str) -> str:
    """Upload path as a submission to competition; returns Kaggle's answer (no secret in it).

    Raises: KaggleError with a message that ends with `hint` where uploading by hand helps.
    """
    api, response = _call(lambda api: api.competition_submit(str(path), message, competition, quiet=False),
                          competition, creds, hint, "submission")
    answer = scrub(str(getattr(response, "message", "") or ""), creds.secrets)
    # the package reports a failed upload in the answer (having printed why), not as an exception
    if answer and answer == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
        raise KaggleError(f"the upload of {path} did not complete ({answer}); run this again, {hint}")
    return answer


def _call(request, competition: str, creds: Credentials, hint: str, action: str):
    """(api, request(api)) on an authenticated API, every failure a KaggleError saying what to do."""
    try:
        check_reachable()
        api = make_api()
        with _scrubbed_output(creds.secrets):
            _authenticate(api, creds, hint)
            return api, request(api)
    except KaggleError:
        raise
    except Exception as e:
        raise KaggleError(scrub(explain(e, competition, creds, hint, action), creds.secrets)) from None


def _authenticate(api, creds: Credentials, hint: str) -> None:
    # authenticate() prints a help text and calls exit(1) when the credentials do not work
    try:
        with _silenced():
            api.authenticate()
    except SystemExit:
        raise KaggleError(f"Kaggle did not accept the credentials from {creds.source} (invalid or "
                          f"expired token?). Create a new API token on {TOKEN_PAGE}, {hint}") from None


def explain(exc: BaseException, competition: str, creds: Credentials, hint: str,
            action: str = "download") -> str:
    """A short message for a failed API call (`action`: download or submission), saying what to do;
    never the raw exception's secrets."""
    status = _http_status(exc)
    if status == 401:
        return (f"Kaggle rejected the credentials from {creds.source} (HTTP 401): the token is invalid or "
                f"expired. Create a new API token on {TOKEN_PAGE}, {hint}")
    if status == 403:
        return (f"Kaggle refused the {action} (HTTP 403): accept the competition's rules on "
                f"https://www.kaggle.com/c/{competition}/rules while logged in, then run this again. "
                f"If you did, the credentials from {creds.source} are invalid or expired: create a new "
                f"API token on {TOKEN_PAGE}")
    if status == 404:
        return f"Kaggle knows no competition {competition!r} (HTTP 404); check --competition"
    if status is not None:
        said = _answer(exc)
        return f"Kaggle answered HTTP {status}{f' ({said})' if said else ''}; try again later, {hint}"
    if _is_network(exc) and _broke_off(exc):
        again = "run this again to resume it" if action == "download" else "run this again"
        return f"the connection to Kaggle broke off during the {action}; {again}, {hint}"
    if _is_network(exc):
        return f"cannot reach Kaggle ({_network_reason(exc)}). Check the connection or proxy, {hint}"
    if "does not match expected size" in str(exc):   # the kaggle package's check after a cut-off stream
        return f"the download stopped early; run this again to resume it, {hint}"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write {exc.filename}: {exc.strerror}"
    return f"{action} failed ({type(exc).__name__}: {scrub(str(exc), creds.secrets)[:300]}); {hint}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _http_status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _answer(exc: BaseException) -> str:
    """The reason in an HTTP error's JSON body ({"message": ...}), as Kaggle gives one, else ""."""
    for e in _chain(exc):
        try:
            said = e.response.json().get("message", "")
        except Exception:   # no response, no JSON, not a dict: nothing to add
            continue
        return str(said)[:200]
    return ""


def _is_network(exc: BaseException) -> bool:
    return any(isinstance(e, NETWORK_ERRORS) for e in _chain(exc))


def _broke_off(exc: BaseException) -> bool:
    text = " ".join(str(e) for e in _chain(exc))
    return any(isinstance(e, BROKEN_OFF) for e in _chain(exc)) or "Connection broken" in text


def _network_reason(exc: BaseException) -> str:
    text = " ".join(str(e) for e in _chain(exc))
    if any(isinstance(e, socket.gaierror) for e in _chain(exc)) or "resolve" in text \
            or "Name or service not known" in text:
        return f"DNS lookup of {API_HOST} failed"
    if any(isinstance(e, (requests.exceptions.Timeout, TimeoutError, socket.timeout)) for e in _chain(exc)) \
            or "timed out" in text:
        return "the connection timed out"
    if "refused" in text:
        return "connection refused"
    return "no connection"
