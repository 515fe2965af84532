from tests.node_fixtures import live_node, node_factory  # noqa: F401

async def test_smoke(live_node):
    print(await live_node.rpc("status"))
    print(await live_node.rpc("health"))
    print(await live_node.rpc("account", address=live_node.addr("buyer")))
