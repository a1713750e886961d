"""Sign and send deliveries as a plugNmeet server would: ``sign`` and ``send``."""

from __future__ import annotations

import json
import os
import shlex
import urllib.error
import urllib.request
from pathlib import Path

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import runtime
from validation import sign as sign_token

CONTENT_TYPE = "application/json"


def _default_url() -> str:
    port = os.environ.get("PORT", "").strip() or "8000"
    return f"http://127.0.0.1:{port}{runtime().settings.webhook_path}"


def _key_pair(key: str | None) -> tuple[str, str]:
    keys = runtime().settings.api_keys
    if key is None:
        key = next(iter(keys))
    if key not in keys:
        raise click.BadParameter(
            f"{key!r} is not a configured API key; use one of: {', '.join(sorted(keys))}.",
            param_hint="--key",
        )
    return key, keys[key]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}.", param_hint="FILE"
        ) from None


_key_option = click.option("--key", help="API key to sign with (default: the first configured).")
_url_option = click.option("--url", help="Receiver URL (default: this service on 127.0.0.1:$PORT).")


@click.command("sign")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@_key_option
@_url_option
@click.option(
    "--hex",
    "hex_digest",
    is_flag=True,
    help="Put a hex digest in the token, as the guide's tokens do.",
)
def sign(file: str, key: str | None, url: str | None, hex_digest: bool) -> None:
    """Print a curl command that delivers FILE signed as a plugNmeet server signs it."""
    body = _read(file)
    api_key, secret = _key_pair(key)
    token = sign_token(body, api_key, secret, digest_format="hex" if hex_digest else "base64")
    parts = [
        "curl", "-sS", "-X", "POST", url or _default_url(),
        "-H", f"Content-Type: {CONTENT_TYPE}",
        "-H", f"Authorization: {token}",
        "-H", f"Hash-Token: {token}",
        "--data-binary", f"@{file}",
    ]  # fmt: skip
    click.echo(shlex.join(parts))


def post(url: str, body: bytes, token: str, timeout: float = 10) -> tuple[int, str]:
    """POST a signed body; return the status code and the response text."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": CONTENT_TYPE, "Authorization": token, "Hash-Token": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@click.command("send")
@with_appcontext
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_key_option
@_url_option
def send(files: tuple[str, ...], key: str | None, url: str | None) -> None:
    """Sign and POST each FILE to the receiver, as a plugNmeet server would."""
    api_key, secret = _key_pair(key)
    target = url or _default_url()
    failed = 0
    for file in files:
        body = _read(file)
        try:
            status, text = post(target, body, sign_token(body, api_key, secret))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(
                f"cannot reach {target} ({reason}); "
                "start the service with 'make run' or pass --url."
            ) from None
        word = json.loads(text).get("status", "") if text.startswith("{") else ""
        click.echo(f"{status} {word:<10} {file}")
        failed += status != 200
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} deliveries were not accepted.")
