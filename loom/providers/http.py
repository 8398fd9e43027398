"""What every remote provider shares: the HTTP client, the streaming POST, and the rules
that turn a failure into a ProviderError labelled transient or permanent (SPEC 5).

Each error text names the HTTP status and a short excerpt of the server's own message.
Every excerpt of what the server sent is redacted before it is cut, and every error text
once more as it leaves, so the API key, whole or in part, never reaches logs or files.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from loom import settings
from loom.errors import MissingApiKey, ProviderError, UsageError
from loom.providers import transport
from loom.providers.base import Completion, Provider, Request, TextSink
from loom.providers.redact import redact
from loom.providers.response import ResponseReader
from loom.store.files import MESSAGE_FILE_LIMIT, KiB, json_encoder, load_json

TIMEOUT_VARIABLE = settings.HTTP_TIMEOUT.name
CONNECT_TIMEOUT = 10.0
EXCERPT_LENGTH = 300
# A reply becomes one message, so a whole JSON reply is held to a message file's limit;
# a stream may be larger, since SSE or NDJSON framing is many times the text it carries.
# Of an error body only the start is read: enough for the excerpt, and a JSON error is
# never near this long.
REPLY_LIMIT = MESSAGE_FILE_LIMIT
STREAM_LIMIT = 4 * MESSAGE_FILE_LIMIT
ERROR_BODY_LIMIT = 64 * KiB
# After its final event a stream still has its end to come (the last, empty chunk of a
# chunked body, normally already sent). Reading it hands the connection back to the pool
# for the next call; a server that keeps the stream open longer loses the connection
# instead of holding up the call.
DRAIN_WAIT = 0.5
DRAIN_LIMIT = 64 * KiB
# A request body: compact and ASCII, built once (`json_encoder`).
_encode_body = json_encoder(separators=(",", ":"))
# Sent with every request besides the provider's own headers. Compression is declined:
# a stream of small events gains little from it and costs CPU on both sides.
COMMON_HEADERS = {
    "User-Agent": transport.USER_AGENT,
    "Accept-Encoding": "identity",
    "Content-Type": "application/json",
}

Secrets = Iterable[str]

_PERMANENT = {400: "bad_request", 401: "auth", 403: "forbidden", 404: "not_found"}


def make_client(env: Mapping[str, str]) -> transport.Client:
    """A client shared by an agent's calls in flight: each read waits at most
    LOOM_HTTP_TIMEOUT (the longest wait for the answer to progress, see `ResponseReader`),
    connecting 10 s; proxy and certificate settings come from `env`."""
    return transport.Client(
        timeout=settings.HTTP_TIMEOUT.get(env), connect=CONNECT_TIMEOUT, env=env
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def classify_status(status: int) -> tuple[str, bool]:
    """The `(error_type, transient)` label for an HTTP error status."""
    if status == 429:
        return "rate_limited", True
    if status >= 500:
        return "server_error", True
    if status == 408:
        # A server that gave up waiting for the request: nothing wrong with the request.
        return "timeout", True
    return _PERMANENT.get(status, "bad_request"), False


def error_message(body: str, secrets: Secrets = ()) -> str:
    """A short, one-line excerpt of the error message inside an API's error body."""
    try:
        return message_of(load_json(body), secrets)
    except ValueError:
        return excerpt(body, secrets)


def message_of(value: Any, secrets: Secrets = ()) -> str:
    """The human part of a parsed error payload, as a short excerpt."""
    # Shapes seen: {"error": {"message": ...}} (OpenAI, Anthropic), {"error": "..."}
    # (Ollama), {"message": ...} and {"detail": ...} (proxies and gateways).
    for key in ("error", "message", "detail"):
        if isinstance(value, dict) and key in value:
            value = value[key]
    return excerpt(value if isinstance(value, str) else json.dumps(value), secrets)


def excerpt(text: str, secrets: Secrets = ()) -> str:
    """`text` on one line with `secrets` redacted, cut to EXCERPT_LENGTH characters."""
    # Redact before cutting: a cut key no longer matches the whole key.
    flat = " ".join(redact(text, secrets).split())
    return flat if len(flat) <= EXCERPT_LENGTH else flat[: EXCERPT_LENGTH - 1] + "…"


def decode_object(data: str, source: str, secrets: Secrets = ()) -> dict[str, Any]:
    """Parse one event's JSON payload; anything but a JSON object is a malformed response."""
    try:
        value = load_json(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderError(
            f"{source} sent a malformed stream event: {excerpt(data, secrets)!r}",
            error_type="malformed_response",
            transient=False,
        )
    return value


def token_count(value: Any) -> int | None:
    """A token count from a usage payload, or None when absent or not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stream_interrupted(source: str) -> ProviderError:
    """The error for a stream that ended before its final event."""
    return ProviderError(
        f"{source} ended the reply stream before it was complete.",
        error_type="stream_interrupted",
        transient=True,
    )


def _is_whole(response: transport.Response) -> bool:
    """Whether a reply is one JSON document rather than an event or NDJSON stream."""
    kind = response.headers.get("content-type", "")
    return kind.split(";")[0].strip().lower() == "application/json"


class HttpProvider(ABC):
    """Base of the providers that talk to an HTTP API with a streaming POST.

    Subclasses set the class attributes and implement the request and the stream reader;
    this class owns the client, the key check and every error classification.
    """

    name: ClassVar[str]  # for messages, e.g. "OpenAI"
    prefix: ClassVar[str]  # the model-string prefix, e.g. "openai"
    model_form: ClassVar[str] = "<prefix>/<model>"
    key_variable: ClassVar[str | None] = None
    base_url_variable: ClassVar[str]
    default_base_url: ClassVar[str]
    path: ClassVar[str]  # appended to the base URL
    models_path: ClassVar[str] = "/models"  # GET: the models the server offers

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        model: str | None = None,
        client: transport.Client | None = None,
    ) -> None:
        """`model` is the user's model string, used in messages; `client` replaces the
        default client (its timeouts then apply) and is left open by `close`."""
        self.model = model or self.prefix
        self.base_url = self._base_url(env.get(self.base_url_variable, "").strip())
        self._endpoint = transport.with_path(self.base_url, self.path)
        self._api_key = env.get(self.key_variable, "").strip() if self.key_variable else ""
        if any(ord(c) < 32 or ord(c) == 127 for c in self._api_key):
            raise UsageError(
                f"{self.key_variable} holds a line break or another control character."
            )
        self._check_proxy(env)
        self._client = client or make_client(env)
        self._owns_client = client is None

    @classmethod
    def create(cls, name: str, env: Mapping[str, str]) -> tuple[Provider, str]:
        """The registry factory: `name` is the model string after `prefix/`."""
        if not cls.accepts(name):
            raise UsageError(
                f"Model '{cls.prefix}/{name}' is incomplete: write it as {cls.model_form}."
            )
        return cls(env, model=f"{cls.prefix}/{name}"), name

    @classmethod
    def accepts(cls, name: str) -> bool:
        """Whether `name` is a well-formed model id for this provider."""
        return bool(name) and not name.startswith("/") and not name.endswith("/")

    def _base_url(self, configured: str) -> str:
        url = (configured or self.default_base_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UsageError(
                f"{self.base_url_variable} must start with http:// or https://, not '{url}'."
            )
        try:
            transport.split_url(url)
        except ValueError as exc:  # no host, a port that is not a number, a broken [IPv6]
            raise UsageError(f"{self.base_url_variable} is not a usable URL: {exc}.") from None
        return url

    def _check_proxy(self, env: Mapping[str, str]) -> None:
        scheme, host, _, _ = transport.split_url(self.base_url)
        try:
            transport.proxy_for(scheme, host, env)
        except ValueError as exc:
            raise UsageError(f"The proxy for {self.base_url}: {exc}.") from None

    def check(self) -> None:
        """Raise MissingApiKey when the provider needs a key and `env` has none."""
        if self.key_variable and not self._api_key:
            raise MissingApiKey(self.key_variable, self.model)

    def close(self) -> None:
        """Close the client this provider made (an injected one stays open)."""
        if self._owns_client:
            self._client.close()

    def complete(self, request: Request, on_text: TextSink) -> Completion:
        """Stream one completion; see `loom.providers.base.Provider`."""
        self.check()
        with self._stream(request) as response:
            if not _is_whole(response):
                reader = self._reader(response, STREAM_LIMIT)

                def progressed(text: str) -> None:
                    reader.progressed = True
                    on_text(text)

                completion = self._read(reader, progressed)
                response.finish(DRAIN_LIMIT, DRAIN_WAIT)
                return completion
            # Some servers ignore `stream: true` (Ollama did when tools were offered, and
            # so do some OpenAI-compatible proxies) and send one JSON body instead.
            reader = self._reader(response, REPLY_LIMIT)
            completion = self._whole(decode_object(reader.text(), self.name, self._secrets))
            if completion.text:
                on_text(completion.text)
            return completion

    def list_models(self, timeout: float) -> list[str]:
        """The model ids the server offers (GET `models_path`), waiting at most `timeout`
        seconds; a redacted ProviderError when it cannot say."""
        self.check()
        url = transport.with_path(self.base_url, self.models_path)
        headers = {**COMMON_HEADERS, **self._headers(), "Accept": "application/json"}
        del headers["Content-Type"]
        try:
            with self._client.request("GET", url, headers, timeout=timeout) as response:
                limit = REPLY_LIMIT if response.ok else ERROR_BODY_LIMIT
                reader = self._reader(response, limit, timeout)
                text = reader.text(truncate=not response.ok)
        except (transport.ReadTimedOut, transport.ConnectTimedOut):
            raise self._error(
                f"{self.name} at {self.base_url} did not answer within {timeout:g} s.", "timeout"
            ) from None
        except transport.TransportError as exc:
            raise self._error(
                f"Could not connect to {self.name} at {self.base_url} ({exc}).", "connection"
            ) from None
        if not response.ok:
            message = error_message(text, self._secrets)
            error_type, transient = classify_status(response.status)
            raise self._error(
                f"{self.name} returned HTTP {response.status}: {message}",
                error_type,
                transient=transient,
            )
        payload = decode_object(text, self.name, self._secrets)
        return sorted(self._model_ids(payload))

    def _model_ids(self, payload: dict[str, Any]) -> list[str]:
        """The ids in a models listing; `data[].id`, as OpenAI and Anthropic answer."""
        data = payload.get("data")
        items = data if isinstance(data, list) else []
        return [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]

    def _reader(
        self, response: transport.Response, limit: int, timeout: float | None = None
    ) -> ResponseReader:
        """The response body, read within `limit` and the progress timeout (`timeout`
        when given, else the client's, LOOM_HTTP_TIMEOUT)."""
        return ResponseReader(
            response.chunks(),
            source=self.name,
            timeout=self._client.timeout if timeout is None else timeout,
            limit=limit,
            timeout_setting=TIMEOUT_VARIABLE if timeout is None else "",
        )

    @property
    def _secrets(self) -> tuple[str, ...]:
        """What must never appear in an error text: the API key."""
        return (self._api_key,) if self._api_key else ()

    @abstractmethod
    def _headers(self) -> dict[str, str]:
        """Headers for the POST, credentials included."""

    @abstractmethod
    def _body(self, request: Request) -> dict[str, Any]:
        """The JSON body for the POST, asking for a streamed reply."""

    @abstractmethod
    def _read(self, reply: ResponseReader, on_text: TextSink) -> Completion:
        """Consume the response lines (iterate `reply`), sending text deltas to `on_text`
        and setting `reply.progressed` for each tool-call fragment (text counts already).

        Raise `stream_interrupted` when the lines end before the terminal event.
        """

    @abstractmethod
    def _whole(self, payload: dict[str, Any]) -> Completion:
        """The completion in a reply that came as one JSON body instead of a stream."""

    def _status_error(self, request: Request, status: int, message: str) -> ProviderError:
        """The error for an HTTP error response; subclasses refine special cases."""
        error_type, transient = classify_status(status)
        text = f"{self.name} returned HTTP {status}"
        return ProviderError(
            f"{text}: {message}" if message else f"{text}.",
            error_type=error_type,
            transient=transient,
            status=status,
        )

    def _connection_hint(self) -> str:
        """A sentence appended to connection errors, e.g. how to start a local server."""
        return ""

    @contextmanager
    def _stream(self, request: Request) -> Iterator[transport.Response]:
        """POST the request and yield the successful response; every failure, including
        those the caller raises while reading, leaves as a redacted ProviderError."""
        url = self._endpoint
        body = _encode_body(self._body(request)).encode()
        started = False
        try:
            with self._client.request(
                "POST", url, {**COMMON_HEADERS, **self._headers()}, body
            ) as response:
                if not response.ok:
                    text = self._reader(response, ERROR_BODY_LIMIT).text(truncate=True)
                    message = error_message(text, self._secrets)
                    error = self._status_error(request, response.status, message)
                    error.retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise error
                started = True
                yield response
        except ProviderError as exc:
            exc.args = (self._redact(str(exc)),)
            raise
        except transport.BadHeader as exc:
            raise self._error(f"{self.name}: {exc}.", "bad_request", transient=False) from None
        except transport.Undecodable as exc:
            raise self._error(
                f"{self.name} sent a reply that could not be decoded ({exc}).",
                "malformed_response",
                transient=False,
            ) from None
        except (transport.ConnectTimedOut, transport.ReadTimedOut) as exc:
            raise self._timeout_error(exc) from None
        except transport.TransportError as exc:
            if started:
                raise self._error(
                    f"The connection to {self.name} dropped before the reply was complete ({exc}).",
                    "stream_interrupted",
                ) from None
            raise self._error(
                f"Could not connect to {self.name} at {self.base_url} ({exc}).",
                "connection",
                hint=self._connection_hint(),
            ) from None

    def _timeout_error(self, exc: transport.TransportError) -> ProviderError:
        if isinstance(exc, transport.ConnectTimedOut):
            return self._error(
                f"Timed out connecting to {self.name} at {self.base_url}.",
                "timeout",
                hint=self._connection_hint(),
            )
        seconds = self._client.timeout
        limit = f" for {seconds:g} s ({TIMEOUT_VARIABLE})" if seconds is not None else ""
        return self._error(f"{self.name} sent nothing{limit}; gave up waiting.", "timeout")

    def _error(
        self, message: str, error_type: str, *, transient: bool = True, hint: str = ""
    ) -> ProviderError:
        text = f"{message} {hint}" if hint else message
        return ProviderError(self._redact(text), error_type=error_type, transient=transient)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)
