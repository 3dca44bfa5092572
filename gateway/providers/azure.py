"""The `azure` provider: Azure OpenAI, with its two ways of laying out URLs.

- The v1 API (`api_version` unset or `v1`): `{base_url}/openai/v1/chat/completions` (and
  `/responses`, `/embeddings`, `/completions`), with no `api-version`; the body's `model` is the
  Azure deployment's name, as OpenAI's SDK sends it to `base_url=.../openai/v1/`.
- The deployment URLs (a dated `api_version`, e.g. `2024-10-21`):
  `{base_url}/openai/deployments/{model}/chat/completions?api-version=...` (and `/embeddings`,
  `/completions`), where `model` - the target's, or the client's - names the Azure deployment;
  the Responses API, which Azure serves per resource, not per deployment, is
  `{base_url}/openai/responses?api-version=...` with the deployment in the body's `model`.

`base_url` is the resource endpoint (`https://NAME.openai.azure.com`, no path: the settings hold
that). The key goes in Azure's `api-key` header unless `auth_scheme: bearer` (an Entra ID
token). The answers are OpenAI's: streams are relayed byte-exact, including Azure's additions
(`prompt_filter_results`, `content_filter_results`, a chunk ending with `finish_reason:
content_filter`); error bodies are OpenAI's shape with an `innererror`, read by the one
translation in `gateway.providers.http` (a prompt refused by the content filter stays a 400
`content_filter` naming the categories that fired).
"""

from __future__ import annotations

from urllib.parse import quote

from gateway.apis import OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS, OPENAI_RESPONSES
from gateway.providers.http import HTTPProvider
from gateway.providers.upstream import UpstreamRequest

__all__ = ["AzureProvider"]

#: The `api_version` of the v1 API (no `api-version` query, no deployment in the path).
V1 = "v1"


class AzureProvider(HTTPProvider):
    """An Azure OpenAI resource reached over HTTPS."""

    default_auth_scheme = "api-key"
    spoken_apis = (OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS, OPENAI_COMPLETIONS)

    def url_for(self, request: UpstreamRequest) -> str:
        version = self.settings.api_version or V1
        if version == V1:
            return f"{self.base_url}/openai/v1{request.path}"
        if request.api is OPENAI_RESPONSES:
            path = f"/openai{request.path}"
        else:
            path = f"/openai/deployments/{quote(request.model, safe='')}{request.path}"
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{separator}api-version={quote(version)}"
