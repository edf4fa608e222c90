"""msgraph-sdk calling Graph itself, with its tokens from the daemon: an azure-core TokenCredential over the socket."""

import asyncio
import os

import httpx
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from msgraph import GraphServiceClient
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator

SOCKET = os.environ.get("GRAPHBROKER_SOCKET") or os.path.join(
    os.environ["XDG_RUNTIME_DIR"], "graphbroker", "graphbroker.sock"
)


class GraphbrokerCredential:
    """A TokenCredential (azure.core.credentials): each get_token asks the daemon, which caches and refreshes."""

    def __init__(self, socket: str = SOCKET, profile: str | None = None) -> None:
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=socket), base_url="http://localhost")
        self._profile = profile

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs) -> AccessToken:
        params = {"scopes": " ".join(scopes)}
        if self._profile:
            params["profile"] = self._profile
        if claims:
            # A CAE claims challenge, as JSON (what the SDK hands over) or base64: the daemon asks for a new token.
            params["claims"] = claims
        answer = self._http.get("/v1/token", params=params)
        body = answer.json()
        if answer.status_code != 200:
            # signin_required, invalid_scopes, …: the daemon's message says what to do.
            raise ClientAuthenticationError(message=f"graphbroker: {body['error']['code']}: {body['error']['message']}")
        return AccessToken(body["access_token"], body["expires_at"])


async def main() -> None:
    # Name the scopes: without them the SDK derives `<scheme>://<host>/.default` from the base URL.
    graph = GraphServiceClient(GraphbrokerCredential(), scopes=["User.Read", "Mail.Read"])
    # Graph itself unless told otherwise (the tests point it at a stand-in).
    graph.request_adapter.base_url = os.environ.get("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0")
    me = await graph.me.get()
    print("me:", me.user_principal_name)

    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(top=2)
    config = MessagesRequestBuilder.MessagesRequestBuilderGetRequestConfiguration(query_parameters=query)
    first = await graph.me.messages.get(request_configuration=config)
    subjects = []
    pages = PageIterator(first, graph.request_adapter)
    await pages.iterate(lambda message: subjects.append(message.subject) or True)
    print("messages:", ", ".join(subjects))


asyncio.run(main())
