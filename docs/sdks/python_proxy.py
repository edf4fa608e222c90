"""msgraph-sdk through the daemon's Graph proxy: no credential in Python at all; the daemon attaches the token."""

import asyncio
import os

import httpx
from kiota_abstractions.authentication import AnonymousAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder
from msgraph.graph_request_adapter import options
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

SOCKET = os.environ.get("GRAPHBROKER_SOCKET") or os.path.join(
    os.environ["XDG_RUNTIME_DIR"], "graphbroker", "graphbroker.sock"
)


def graph_client() -> GraphServiceClient:
    http = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=SOCKET),
        base_url="http://localhost/graph/v1.0",
        # The scopes the daemon gets the token for (the profile's `scopes` when absent); sent on every call,
        # the page iterator's too.
        headers={"X-Graphbroker-Scopes": "User.Read Mail.Read"},
    )
    # Pass msgraph's `options`, or `/me` goes out as `/users/me-token-to-replace`.
    http = GraphClientFactory.create_with_default_middleware(client=http, options=options)
    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider(), http)
    adapter.base_url = "http://localhost/graph/v1.0"
    return GraphServiceClient(request_adapter=adapter)


async def main() -> None:
    graph = graph_client()
    me = await graph.me.get()
    print("me:", me.user_principal_name)

    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(top=2)
    config = MessagesRequestBuilder.MessagesRequestBuilderGetRequestConfiguration(query_parameters=query)
    first = await graph.me.messages.get(request_configuration=config)
    subjects = []
    # Each @odata.nextLink comes back pointing at the proxy (http://localhost/graph/…), so the iterator stays
    # on the socket.
    pages = PageIterator(first, graph.request_adapter)
    await pages.iterate(lambda message: subjects.append(message.subject) or True)
    print("messages:", ", ".join(subjects))


asyncio.run(main())
